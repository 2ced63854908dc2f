"""The built-in instruction templates: at least three per task, in the layout a user's YAML file uses.

They differ as T0's and FLAN's do: the instruction before or after the input, the options listed before,
after or not at all, a question or an imperative. Each reference answer is written in the format its parser
reads back (``tasks/parsers.py``), which ``tests/test_task_templates.py`` checks for every schema example.
Kept as Python data rather than a packaged YAML file so nothing beyond the modules has to ship; the same
validation as a user's file (``templates.load_templates``) applies.
"""

from __future__ import annotations

_OPTIONS_INLINE = "{{ options | join(', ') }}"
_OPTIONS_LINES = "{% for o in options %}- {{ o }}\n{% endfor %}"

TEMPLATES: list[dict[str, object]] = [
    # ------------------------------------------------------------------------------ classification
    {
        "name": "classification/options-first",
        "task": "classification",
        "description": "the label set first, then the text",
        "prompt": "Choose the label that fits the text best. Options:\n"
        + _OPTIONS_LINES
        + "\nText: {{ text }}\n{% if text_pair %}Second text: {{ text_pair }}\n{% endif %}Label:",
        "answer": "{{ label }}",
    },
    {
        "name": "classification/options-after",
        "task": "classification",
        "description": "the text first, the question and the options after it",
        "prompt": "{{ text }}\n{% if text_pair %}\n{{ text_pair }}\n{% endif %}\n"
        "Which category does the text above belong to? Answer with one of: " + _OPTIONS_INLINE + ".",
        "answer": "{{ label }}",
    },
    {
        "name": "classification/no-options",
        "task": "classification",
        "description": "no option list: the model must know the label set",
        "prompt": "Classify the following text{% if text_pair %} pair{% endif %}.\n\n{{ text }}"
        "{% if text_pair %}\n{{ text_pair }}{% endif %}",
        "answer": "{{ label }}",
    },
    # ------------------------------------------------------------------------------ ner
    {
        "name": "ner/typed-list",
        "task": "ner",
        "description": "instruction and answer format before the sentence, types listed",
        "prompt": "List the named entities in the sentence as 'TYPE: text' separated by '; ', "
        "or write 'none'.{% if options %} Types: " + _OPTIONS_INLINE + ".{% endif %}\n\n"
        "Sentence: {{ sentence }}",
        "answer": "{{ entity_answer }}",
    },
    {
        "name": "ner/sentence-first",
        "task": "ner",
        "description": "the sentence first, the instruction after it",
        "prompt": "{{ sentence }}\n\nWhich named entities does this sentence mention? Give each as "
        "TYPE: text, separated by semicolons; if there are none, say none.",
        "answer": "{{ entity_answer }}",
    },
    {
        "name": "ner/types-question",
        "task": "ner",
        "description": "a question naming each entity type on its own line",
        "prompt": "Find every mention of these entity types in the text:\n"
        + _OPTIONS_LINES
        + "Text: {{ sentence }}\nAnswer in the form 'TYPE: text; TYPE: text' (or 'none').",
        "answer": "{{ entity_answer }}",
    },
    # ------------------------------------------------------------------------------ relation
    {
        "name": "relation/marked-question",
        "task": "relation",
        "description": "entities marked <e1>/<e2> in the text, a question with the options after",
        "prompt": "{{ marked_text }}\n\nWhat is the relation between <e1>{{ head }}</e1> and "
        "<e2>{{ tail }}</e2>?{% if options %} Options: " + _OPTIONS_INLINE + ".{% endif %}",
        "answer": "{{ relation }}",
    },
    {
        "name": "relation/options-first",
        "task": "relation",
        "description": "the relation labels first, then the text and the two entities",
        "prompt": "Relations (e1 is the first entity, e2 the second):\n"
        + _OPTIONS_LINES
        + "\nText: {{ text }}\nFirst entity (e1): {{ head }}\nSecond entity (e2): {{ tail }}\n"
        "Which relation holds?",
        "answer": "{{ relation }}",
    },
    {
        "name": "relation/triple",
        "task": "relation",
        "description": "no option list; the answer is a (head, relation, tail) triple",
        "prompt": 'Read the sentence and state how "{{ head }}" relates to "{{ tail }}" as '
        "'head | relation | tail'.\n\n{{ text }}",
        "answer": "{{ head }} | {{ relation }} | {{ tail }}",
    },
    # ------------------------------------------------------------------------------ qa
    {
        "name": "qa/context-first",
        "task": "qa",
        "description": "context, then the question; the instruction last",
        "prompt": "{{ context }}\n\nQuestion: {{ question }}\n"
        "Answer with a span of the text above, or 'unanswerable' if it does not say.",
        "answer": "{{ answer }}",
    },
    {
        "name": "qa/question-first",
        "task": "qa",
        "description": "the question before the context",
        "prompt": 'Answer the question "{{ question }}" using only this passage '
        "(reply 'unanswerable' when it has no answer):\n\n{{ context }}",
        "answer": "{{ answer }}",
    },
    {
        "name": "qa/extract",
        "task": "qa",
        "description": "labelled fields, instruction first, 'Answer:' cue",
        "prompt": "Extract the answer from the context.\nContext: {{ context }}\nQuestion: {{ question }}\nAnswer:",
        "answer": "{{ answer }}",
    },
    # ------------------------------------------------------------------------------ translation
    {
        "name": "translation/direct",
        "task": "translation",
        "description": "instruction first",
        "prompt": "Translate from {{ source_language }} to {{ target_language }}:\n\n{{ source }}",
        "answer": "{{ target }}",
    },
    {
        "name": "translation/source-first",
        "task": "translation",
        "description": "the text first, the instruction after it",
        "prompt": "{{ source }}\n\nTranslate the text above into {{ target_language }}.",
        "answer": "{{ target }}",
    },
    {
        "name": "translation/labelled",
        "task": "translation",
        "description": "labelled source, answer prefixed with 'Translation:'",
        "prompt": "{{ source_language }}: {{ source }}\n{{ target_language }}:",
        "answer": "Translation: {{ target }}",
    },
    # ------------------------------------------------------------------------------ summarization
    {
        "name": "summarization/summarize",
        "task": "summarization",
        "description": "instruction first",
        "prompt": "Summarize the following article in a sentence or two.\n\n{{ document }}",
        "answer": "{{ summary }}",
    },
    {
        "name": "summarization/tldr",
        "task": "summarization",
        "description": "the document first, a TL;DR cue after it",
        "prompt": "{{ document }}\n\nTL;DR:",
        "answer": "{{ summary }}",
    },
    {
        "name": "summarization/question",
        "task": "summarization",
        "description": "a question after the document, answer labelled 'Summary:'",
        "prompt": "Article: {{ document }}\n\nWhat is the gist of this article?",
        "answer": "Summary: {{ summary }}",
    },
    # ------------------------------------------------------------------------------ dialogue
    {
        "name": "dialogue/continue",
        "task": "dialogue",
        "description": "the transcript first, the instruction after it",
        "prompt": "{{ transcript }}\n\nWrite the assistant's next reply in this conversation.",
        "answer": "{{ reply }}",
    },
    {
        "name": "dialogue/respond",
        "task": "dialogue",
        "description": "the instruction first, then the transcript",
        "prompt": "You are a helpful assistant. Continue the conversation below with one reply.\n\n"
        "{{ transcript }}\nAssistant:",
        "answer": "{{ reply }}",
    },
    {
        "name": "dialogue/last-turn",
        "task": "dialogue",
        "description": "the earlier turns as context, the last user turn as the request",
        "prompt": "{% if history | length > 1 %}Earlier in the conversation:\n"
        "{% for t in history[:-1] %}{% if t.role != 'system' %}{{ t.role | capitalize }}: {{ t.content }}\n"
        "{% endif %}{% endfor %}\nNow reply to:\n{% endif %}{{ last_user }}",
        "answer": "{{ reply }}",
    },
    # ------------------------------------------------------------------------------ code
    {
        "name": "code/complete",
        "task": "code",
        "description": "complete the function from its signature and docstring",
        "prompt": "Complete the Python function `{{ entry_point }}`:\n\n```python\n{{ prompt | trim }}\n```",
        "answer": "{% if solution %}```python\n{{ solution }}\n```{% endif %}",
    },
    {
        "name": "code/with-tests",
        "task": "code",
        "description": "the function and the tests it must pass",
        "prompt": "```python\n{{ prompt | trim }}\n```\n\nImplement `{{ entry_point }}` so that these tests pass:\n\n"
        "```python\n{{ tests | trim }}\n```",
        "answer": "{% if solution %}```python\n{{ solution }}\n```{% endif %}",
    },
    {
        "name": "code/plain",
        "task": "code",
        "description": "no fences in the prompt; the answer is bare code",
        "prompt": "Write the body of this Python function and return the whole function.\n\n{{ prompt }}",
        "answer": "{{ solution if solution else '' }}",
    },
]

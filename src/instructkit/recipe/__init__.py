"""``instructkit run RECIPE.yaml``: data -> eval before -> train -> eval after -> report, in one run folder.

A recipe names the input files and how to curate them, a training config (a file under
``recipes/train/`` or a mapping), and how to evaluate; :func:`check_recipe` checks all of it, the configs
it points to included, before any stage starts. The run folder ``<output_dir>/<name>/`` holds::

    generate/        generated records, rejects, card, cache.sqlite        (stage "generate", optional)
    template/        labeled data as instruction records: train.jsonl,
                     the held-out test.jsonl, card.json, rejects.jsonl       (stage "template", optional)
    data/            curated train/val/test, rejects.jsonl, card.json/md   (stage "data")
    eval/before.*    the untouched model on the eval split                 (stage "before")
    train/           the training run folder (config, checkpoints, model/)  (stage "train")
    eval/after.*     the tuned model on the same split, same decoding       (stage "after")
    report.md/.html  the before/after report                                (stage "report")
    stages.json      each finished stage's input hash

A stage is skipped when its outputs exist and the hash of its inputs (config section + content hashes of
the files it reads + the hashes of the stages before it) equals the one recorded when it finished, so a
rerun after a crash resumes at the stage that broke, and a changed input reruns exactly the stages
downstream of it.

Training resumes only from checkpoints made with the same inputs: each checkpoint's manifest records the
training config and the content hashes of the curated splits (``train/checkpoints.py``). After a change
(a new ``optim.lr``, other input data) or ``--force`` of train or an earlier stage, the old checkpoints
are moved to ``train/checkpoints-previous/`` and training starts at step 0; the log says which.

``stages.json`` is written atomically; if it is unreadable anyway, the run stops with an error naming it
rather than guessing which stages finished (delete it to rerun every stage).

A recipe with ``generate: {generator: NAME, ...}`` starts with the generation stage: its records join the
data stage's inputs. Its digest is the generator's resolved config and the bytes of the files it reads
(seeds, input), so it is skipped while those are unchanged; interrupted, it reruns and its request cache
(``generate/cache.sqlite``) answers every request already paid for.

A recipe with ``template:`` (a mixture config, path or mapping: ``instructkit config show mixture``) turns
labeled datasets into instruction records first (``tasks/``): the rendered training records join the
data stage's inputs, and the sources' ``test`` files (a dataset's own test split) are rendered with one
template each into ``template/test.jsonl``, the held-out split that ``eval.split: held-out`` scores. The
held-out rows are never curated, split or mixed: the score before and after training reads the same
prompts whatever the curation does, and each record is scored with its task's parser and metric.

The package: ``schema`` (the typed recipe), ``plan`` (everything checked before a stage starts),
``stages`` (one function per stage), ``runner`` (the run folder and the order of the stages).
"""

from instructkit.recipe.plan import check_recipe
from instructkit.recipe.runner import RunResult, run_recipe
from instructkit.recipe.schema import STAGES, EvalSettings, Recipe, RecipeError

__all__ = ["STAGES", "EvalSettings", "Recipe", "RecipeError", "RunResult", "check_recipe", "run_recipe"]

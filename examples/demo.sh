#!/usr/bin/env bash
# The quickstart, end to end on CPU with the bundled model (what `make demo` runs).
set -euo pipefail
cd "$(dirname "$0")/.."
IK="${IK:-.venv/bin/instructkit}"
OUT="${OUT:-runs/demo}"
DATA=examples/data/demo.jsonl
MODEL=smollm2-135m-instruct

echo "== 1. models: build the dequantized cache once (later loads take well under a second)"
$IK models prepare "$MODEL"
$IK models list

echo "== 2. data: convert the demo set to every chat format (records read = written + rejected)"
for fmt in openai sharegpt alpaca prompt-completion self-instruct dolly instructkit; do
  $IK data convert "$DATA" --to "$fmt" -o "$OUT/formats/demo.$fmt.jsonl" --on-error skip
done
$IK data convert "$OUT/formats/demo.sharegpt.jsonl" --to alpaca -o "$OUT/formats/demo.alpaca.parquet"
$IK data show "$OUT/formats/demo.alpaca.parquet" -n 1
# Token classification data (NER) has its own record kind: tokens + tags.
$IK data convert examples/data/ner-sample.conll --to instructkit -o "$OUT/formats/ner-sample.jsonl"
$IK data convert "$OUT/formats/ner-sample.jsonl" --to conll -o "$OUT/formats/ner-sample.conll"
$IK data show "$OUT/formats/ner-sample.jsonl" -n 1

echo "== 3. generate: a few new instructions from the bundled model (Self-Instruct; the card accounts for every candidate)"
$IK generate self-instruct -n 3 -o "$OUT/generated" --set requests_per_round=4 \
  --set instruction_sampling.max_tokens=96 --set instance_sampling.max_tokens=96
$IK data show "$OUT/generated/records.jsonl" -n 2

echo "== 4. loss masks: what SmolLM2 is trained on (highlighted) and what is context only (dimmed)"
$IK data inspect "$DATA" --model "$MODEL" -n 2 --max-length 256

echo "== 5. the recipe: curate -> eval before -> LoRA fine-tune -> eval after -> report"
$IK run recipes/run/quickstart.yaml --output-dir "$OUT"
RUN="$OUT/quickstart"
$IK data stats "$RUN/data"

echo "== 6. the same instruction, before and after"
PROMPT="Classify the sentiment of this review as positive, negative, or neutral. Answer with one word.

Review: The battery died after two days and the seller never answered my messages."
echo "-- before (base model)"
$IK chat --model "$MODEL" --prompt "$PROMPT" --max-new-tokens 48
echo "-- after (LoRA, $RUN/train)"
$IK chat --model "$RUN/train" --prompt "$PROMPT" --max-new-tokens 48

echo "== 7. run it again: every stage is up to date, so this only prints the result"
$IK run recipes/run/quickstart.yaml --output-dir "$OUT"

echo "== 8. serve the tuned model (OpenAI-compatible, 127.0.0.1, a free port): one plain and one streamed reply"
"${PY:-.venv/bin/python}" examples/demo_serve.py "$RUN/train"

echo "== 9. the studio: these runs in a browser (runs, data and rejects, training live, chat, export)"
echo "report: $RUN/report.html"
echo "studio: $IK studio --runs $OUT    # then open http://127.0.0.1:7860/"

#!/usr/bin/env bash
# The bundled default model's recipe, end to end: sources, data, a warm start from the bundled
# model, export, evaluation beside PocketSphinx. Each stage can be run alone:
#
#   recipes/realwords/run.sh                      # every stage
#   recipes/realwords/run.sh --stage 3 --stop-stage 3   # only the training
#
# Environment (defaults in brackets): DATA [/work/data], SRC [/work/src] (source checkouts),
# EXP [exp/real], CPU_HOURS [1.1] (training budget; the run resumes from $EXP/last.pt),
# THREADS [1]. Stage costs on 2 cores: sources ~1 GB of git checkouts; data ~15 min;
# training as budgeted (~1000 steps per CPU-hour); evaluation ~30 min (PocketSphinx is the slow part).
set -euo pipefail
cd "$(dirname "$0")/../.."

stage=0
stop_stage=5
while [ $# -gt 0 ]; do
    case "$1" in
        --stage) stage=$2; shift 2 ;;
        --stop-stage) stop_stage=$2; shift 2 ;;
        *) echo "usage: $0 [--stage N] [--stop-stage N]" >&2; exit 2 ;;
    esac
done
DATA=${DATA:-/work/data}
SRC=${SRC:-/work/src}
EXP=${EXP:-exp/real}
CPU_HOURS=${CPU_HOURS:-1.1}
THREADS=${THREADS:-1}
run() { [ "$stage" -le "$1" ] && [ "$stop_stage" -ge "$1" ]; }

if run 0; then  # real speech sources (public git repositories; any checkout works)
    mkdir -p "$SRC"
    for url in https://github.com/thegtagamer/PICO-tinyML-benchmark \
               https://github.com/Jakobovski/free-spoken-digit-dataset \
               https://github.com/jimbozhang/speechocean762 \
               https://github.com/rigved/rit-engl-682-spring-2021-project \
               https://github.com/GreenTea749/ASR-AI-microservice-Elastic-search-AI-application; do
        [ -d "$SRC/$(basename "$url")" ] || git clone --depth 1 "$url" "$SRC/$(basename "$url")"
    done
fi

if run 1; then  # data: synthetic corpus, neural voices, real clips (package, words, sentences, Common Voice)
    python3 recipes/synth/prepare.py --data-dir "$DATA/synth" --train-hours 15 --short-hours 1.5 --jobs 2
    python3 recipes/neural/prepare.py --text-dir "$DATA/synth/text" --data-dir "$DATA/neural" \
        --voices 24 --meter-utts 10 --max-meter-wer 45 --hours 5
    python3 recipes/realspeech/prepare.py --data-dir "$DATA/real" --repeat 20
    python3 recipes/realwords/prepare.py --data-dir "$DATA/realwords" --repeat 4 \
        --speech-commands "$SRC/PICO-tinyML-benchmark/MLTK_keyworkSpotting/dataset" \
        --fsdd "$SRC/free-spoken-digit-dataset/recordings" --merge-dev "$DATA/real/real_dev.jsonl"
    python3 recipes/realwords/prepare.py --data-dir "$DATA/speechocean" --repeat 2 \
        --speechocean "$SRC/speechocean762" --merge-dev "$DATA/realwords/dev_real.jsonl"
    python3 recipes/realwords/prepare.py --data-dir "$DATA/commonvoice" \
        --common-voice "$SRC/rit-engl-682-spring-2021-project"
    # Common Voice's Kaggle-packaged dev split (4,076 clips, speakers unknown): training, and a text-disjoint
    # cv_dev; no sentence of an evaluation set is kept
    python3 recipes/realwords/prepare.py --data-dir "$DATA/cvk" --repeat 2 \
        --cv-csv "$SRC/ASR-AI-microservice-Elastic-search-AI-application/cv-valid-dev/cv-valid-dev.csv" \
        --exclude-text "$DATA/commonvoice/test.jsonl" "$DATA/synth/test_heldout.jsonl" "$DATA/synth/asterisk.jsonl" \
        "$DATA/synth/asterisk_letters.jsonl" "$DATA/speechocean/dev_real.jsonl" "$DATA/speechocean/test.jsonl"
    # evaluation sets under names of their own (recipes/eval names a set by its file name)
    grep '"real-fsdd"' "$DATA/realwords/dev.jsonl" > "$DATA/realwords/fsdd_theo.jsonl"
    cp "$DATA/speechocean/dev.jsonl" "$DATA/speechocean/so_dev.jsonl"
    cp "$DATA/speechocean/test.jsonl" "$DATA/speechocean/so_test.jsonl"
fi

if run 2; then  # the synthetic part without the MBROLA voices (non-commercial licence), for training
    # experiments that pool it (the default's last stage does not: see the config)
    for split in train train_short; do
        python3 tools/filter_manifest.py "$DATA/synth/$split.jsonl" "$DATA/synth/${split}_nombrola.jsonl" \
            --drop engine mbrola --drop voice 'festival:(us[123]|en1)$'
    done
fi

if run 3; then  # warm start from the bundled model on real and neural voices, selected on real speech
    # the config names its data as ${DATA:-/work/data}/...: asr train expands DATA from the environment
    DATA="$DATA" asr train --config recipes/realwords/conf/gru_small_real.toml --exp "$EXP" \
        --set init_from=default max_cpu_hours="$CPU_HOURS" threads="$THREADS"
fi

if run 4; then  # bundle the selected checkpoint (lowest real-dev CER) as the default model
    python3 tools/export_model.py "$EXP/best.pt" --name default
fi

if run 5; then  # the README's table: default decoding, greedy and PocketSphinx on the same files
    python3 recipes/eval/run.py --model default --decoder greedy default --threads 1 --out "$EXP/eval" \
        --sets "$DATA/synth/test_heldout.jsonl" "$DATA/synth/asterisk_letters.jsonl" \
        "$DATA/realwords/dev_real.jsonl" "$DATA/speechocean/so_dev.jsonl" "$DATA/speechocean/so_test.jsonl" \
        "$DATA/commonvoice/test.jsonl" "$DATA/cvk/cv_dev.jsonl"
    python3 recipes/eval/run.py --model default --decoder greedy --threads 1 --out "$EXP/eval_digits" \
        --sets "$DATA/realwords/fsdd_theo.jsonl" --grammar zero,one,two,three,four,five,six,seven,eight,nine
fi

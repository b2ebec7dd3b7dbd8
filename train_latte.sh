#!/usr/bin/env bash
# The Latte paper's script: train_latte.sh [category] [gpu_id] [n_latent_tokens] [vq_method] [aggregation_method] [lr]
# Trains Latte on Amazon Reviews 2023 (set GENREC_DATA_DIR or pass --data_dir through GENREC_FLAGS).
set -euo pipefail
category=${1:-Industrial_and_Scientific}
gpu_id=${2:-0}
n_latent_tokens=${3:-8}
vq_method=${4:-rqkmeans}
aggregation_method=${5:-agg_max}
lr=${6:-0.003}
cd "$(dirname "$0")"
CUDA_VISIBLE_DEVICES=$gpu_id exec "${PYTHON:-python}" main.py --model=Latte --dataset=AmazonReviews2023 \
    --category="$category" --vq_method="$vq_method" --vq_n_codebooks=3 --vq_codebook_size=256 \
    --n_latent_tokens="$n_latent_tokens" --aggregation_method="$aggregation_method" --lr="$lr" \
    --num_beams=50 --test_num_beams=500 ${GENREC_FLAGS:-}

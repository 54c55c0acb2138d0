#!/bin/bash
# CPU training throughput of our engine against PyTorch on the same
# network, batch size and thread count, run one after the other on this
# machine: the classifier bench/conv5-cls.yaml at 28x28 (batch from the
# arguments), then the detector yolov8n.yaml at 10 classes, 128x128 and
# 320x320, batch 16, trained with the YOLOv8 loss on synthetic boxes.
# Needs Debian's python3-torch for the PyTorch side; without it only our
# figures are printed.
#   bench/run-cpu.sh [batch] [threads] [seconds] [all|cls|det]
# The last argument picks the classifier, the detector or both (default).
# batch applies to the classifier only.
set -eu
cd "$(dirname "$0")/.."

build=${BUILD:-build}
batch=${1:-64}
threads=${2:-2}
seconds=${3:-10}
networks=${4:-all}
case $networks in
all | cls | det) ;;
*)
    echo "bench/run-cpu.sh: invalid network choice '$networks'; use all," \
         "cls or det" >&2
    exit 2
    ;;
esac

have_torch=0
if /usr/bin/python3 -c 'import torch' 2>/dev/null; then
    have_torch=1
fi

# pair LABEL IMGSZ BATCH YAML CLASSES TORCH_MODEL: time both sides and
# print the ratio.
pair() {
    local label=$1 imgsz=$2 pair_batch=$3 yaml=$4 classes=$5 torch_model=$6
    local ours theirs

    echo "bench: $label, ${imgsz}x${imgsz}, batch $pair_batch," \
         "$threads threads, ${seconds}s each, $(nproc) cores:" \
         "$(lscpu | sed -n 's/^Model name: *//p'), load average" \
         "$(cut -d' ' -f1-3 /proc/loadavg)"
    ours=$("$build/bench/train_cpu" "$pair_batch" "$threads" "$seconds" cpu \
           "$yaml" "$imgsz" "$classes")
    echo "$ours"
    if [ "$have_torch" -eq 0 ]; then
        echo "pytorch: not installed (apt-get install python3-torch)"
        return
    fi
    theirs=$(/usr/bin/python3 bench/train_torch.py "$pair_batch" "$threads" \
             "$seconds" --model "$torch_model" --imgsz "$imgsz")
    echo "$theirs (torch $(/usr/bin/python3 -c \
         'import torch; print(torch.__version__)'))"
    awk -v a="${ours##* }" -v b="${theirs##* }" -v l="$label at $imgsz" \
        'BEGIN { if (b > 0) printf "%s ratio trainyard / pytorch: %.2f\n",
                                   l, a / b
                 else printf "%s ratio: none, PyTorch made no step\n", l }'
}

if [ "$networks" != det ]; then
    pair conv5-cls 28 "$batch" bench/conv5-cls.yaml 0 conv5-cls
fi
if [ "$networks" != cls ]; then
    pair yolov8n 128 16 yolov8n.yaml 10 yolov8n
    pair yolov8n 320 16 yolov8n.yaml 10 yolov8n
fi

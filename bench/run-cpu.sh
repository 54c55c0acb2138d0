#!/bin/bash
# CPU training throughput of our engine against PyTorch on the same
# network (bench/conv5-cls.yaml), batch size and thread count, run one
# after the other on this machine. Needs Debian's python3-torch for the
# PyTorch side; without it only our figure is printed.
#   bench/run-cpu.sh [batch] [threads] [seconds]
set -eu
cd "$(dirname "$0")/.."

build=${BUILD:-build}
batch=${1:-64}
threads=${2:-2}
seconds=${3:-10}

echo "bench: conv5-cls, 28x28, batch $batch, $threads threads," \
     "${seconds}s each, $(nproc) cores: $(lscpu | sed -n 's/^Model name: *//p')"
ours=$("$build/bench/train_cpu" "$batch" "$threads" "$seconds")
echo "$ours"
if /usr/bin/python3 -c 'import torch' 2>/dev/null; then
    theirs=$(/usr/bin/python3 bench/train_torch.py "$batch" "$threads" \
             "$seconds")
    echo "$theirs (torch $(/usr/bin/python3 -c \
         'import torch; print(torch.__version__)'))"
    awk -v a="${ours##* }" -v b="${theirs##* }" \
        'BEGIN { printf "ratio trainyard / pytorch: %.2f\n", a / b }'
else
    echo "pytorch: not installed (apt-get install python3-torch)"
fi

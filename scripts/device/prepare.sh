#!/usr/bin/env bash
# Prepares what scripts/device/run.sh needs on the GPU machine, which has no .NET SDK: trimmed self-contained
# publishes of the CLI and of the device checks, and the native sources, scripts and Python client (with its GPU
# replay check, clients/python/examples/gpu_replay_check.py), packed into DEST (default
# .device/ of this checkout, which git ignores) as app.tar.gz, checks.tar.gz and src.tar.gz.
#
#   scripts/device/prepare.sh [DEST]
#
# On the GPU machine, from the folder holding them:
#   mkdir -p /tmp/rr && for f in app checks src; do tar xzf DEST/$f.tar.gz -C /tmp/rr; done
#   bash /tmp/rr/scripts/device/run.sh --app /tmp/rr/app --checks /tmp/rr/checks all
#   python3 /tmp/rr/clients/python/examples/gpu_replay_check.py --routereplay /tmp/rr/app/routereplay   # needs PyTorch
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
dest=${1:-$root/.device}
mkdir -p "$dest"
staging=$(mktemp -d)
trap 'rm -rf "$staging"' EXIT
dotnet publish "$root/src/RouteReplay.Cli" -c Release -r linux-x64 --self-contained -p:PublishTrimmed=true -o "$staging/app" --nologo -v quiet
dotnet publish "$root/tests/RouteReplay.DeviceChecks" -c Release -r linux-x64 --self-contained -p:PublishTrimmed=true -o "$staging/checks" --nologo -v quiet
tar czf "$dest/app.tar.gz" -C "$staging" app
tar czf "$dest/checks.tar.gz" -C "$staging" checks
tar czf "$dest/src.tar.gz" -C "$root" native/include native/src native/tests native/bench native/build.sh scripts/device scripts/hf_cuda_reference.py scripts/hf_bench.py clients/python/routereplay_client clients/python/examples
ls -la "$dest"/*.tar.gz

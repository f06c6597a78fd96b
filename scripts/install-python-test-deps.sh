#!/usr/bin/env bash
# Installs what the Python client's tests (clients/python/tests, run by the test suite's PythonClientTests) need on
# Debian 12: NumPy and pytest for the system Python, /usr/bin/python3. Does nothing when they are there. Runs apt-get
# as root, or through sudo for another user.
set -euo pipefail
if [ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import numpy, pytest' >/dev/null 2>&1; then
  exit 0
fi
as_root=()
if [ "$(id -u)" != 0 ]; then
  as_root=(sudo)
fi
packages=(python3 python3-numpy python3-pytest)
export DEBIAN_FRONTEND=noninteractive
if ! "${as_root[@]}" apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null 2>&1; then
  "${as_root[@]}" apt-get update -qq
  "${as_root[@]}" apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
fi
/usr/bin/python3 -c 'import numpy, pytest; print("python3", "numpy", numpy.__version__, "pytest", pytest.__version__)'

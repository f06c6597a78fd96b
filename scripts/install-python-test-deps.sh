#!/usr/bin/env bash
# Installs what the Python client's tests (clients/python/tests, run by the test suite's PythonClientTests) need on
# Debian 12: NumPy and pytest for the system Python, /usr/bin/python3. Does nothing when they are there.
set -euo pipefail
if [ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import numpy, pytest' >/dev/null 2>&1; then
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y -qq --no-install-recommends python3 python3-numpy python3-pytest >/dev/null 2>&1; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends python3 python3-numpy python3-pytest >/dev/null
fi
/usr/bin/python3 -c 'import numpy, pytest; print("python3", "numpy", numpy.__version__, "pytest", pytest.__version__)'

#!/usr/bin/env bash
# Sanity and unit tests of the collection under one ansible-core line, with Python 3.13 in a
# container of the Debian 13 (trixie) test image. The lines 2.20 and newer need Python 3.12+,
# which Debian 12 does not have; this way a Debian 12 machine needs nothing but podman.
#
#   tests/matrix/core-line.sh LINE TREE
#
# LINE is an ansible-core line with a requirements-core-LINE.txt at the repository root (the
# full pin set for Python 3.13). TREE is a copy of the collection at
# .../ansible_collections/ipmasq/gateway (the Makefile makes it), where ansible-test writes.
#
# The container has no network (--network=none). On the host, pip downloads into a wheel
# house every wheel the container installs: the line's pins, the requirements of each
# ansible-test sanity test of that ansible-core, and the pip that ansible-test bootstraps its
# virtual environments with. In the container, /etc/pip.conf points pip at that wheel house
# only, and scripts/ansible-test-get-pip.py stands in for get-pip.py as in `make sanity`.
# Everything the container makes stays in .build/core/LINE (its HOME and the line's venv),
# so a second run installs nothing.
set -euo pipefail

line=${1:?usage: $0 LINE TREE}
tree=${2:?usage: $0 LINE TREE}
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
requirements=$repo_root/requirements-core-$line.txt
[[ -f "$requirements" ]] || { echo "core-line: no $requirements" >&2; exit 2; }
[[ -d "$tree/plugins" && "$tree" == */ansible_collections/ipmasq/gateway ]] \
    || { echo "core-line: $tree is not a copy of the collection at ansible_collections/ipmasq/gateway" >&2; exit 2; }
tree=$(cd "$tree" && pwd)
collections_dir=$(cd "$tree/../../.." && pwd)

python_version=3.13
work=$repo_root/.build/core/$line
wheels=$work/wheels  # one wheel house per line, so that lines can run side by side
image=$("$repo_root/scripts/build-image.sh" --release trixie --print-ref)
container=ipmasq-core-$line
pip=${PIP:-pip}

log() { printf '%s core-line %s: %s\n' "$(date +%H:%M:%S)" "$line" "$*" >&2; }

podman image exists "$image" || { echo "core-line: no image $image; run make images" >&2; exit 1; }
mkdir -p "$work/home" "$wheels"

# pip_download ARGS...: wheels for CPython 3.13 on x86-64 Linux (the trixie image), binaries
# only unless ARGS say --no-deps (pip's rule for downloads for another interpreter).
pip_download() {
    local only_binary=--only-binary=:all:
    [[ " $* " == *" --no-deps "* ]] && only_binary=
    "$pip" download --quiet --disable-pip-version-check --dest "$wheels" $only_binary \
        --python-version "$python_version" --implementation cp --abi "cp${python_version/./}" \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_34_x86_64 "$@"
}

# The wheel house for this line, once per content of its requirements file.
stamp=$work/wheels.stamp
want_stamp=$(sha256sum "$requirements" "${BASH_SOURCE[0]}" | sha256sum | cut -c1-16)
if [[ "$(cat "$stamp" 2>/dev/null)" != "$want_stamp" ]]; then
    log "downloading wheels for Python $python_version"
    pip_download -r "$requirements"
    core_version=$(sed -n 's/^ansible-core==//p' "$requirements")
    core_wheel=$(ls "$wheels"/ansible_core-"$core_version"-py3-none-any.whl)
    rm -rf "$work/ansible-test-data"
    mkdir -p "$work/ansible-test-data"
    python3 - "$core_wheel" "$work/ansible-test-data" <<'EOF'
import fnmatch
import sys
import zipfile

with zipfile.ZipFile(sys.argv[1]) as wheel:
    wheel.extractall(sys.argv[2], [name for name in wheel.namelist() if fnmatch.fnmatch(
        name, "ansible_test/_data/requirements/sanity.*.txt")
        or name == "ansible_test/_internal/python_requirements.py"])
EOF
    : > "$work/url-pins.txt"
    for req in "$work"/ansible-test-data/ansible_test/_data/requirements/sanity.*.txt; do
        # A pin to a source archive (`name @ https://...`) cannot be fetched here: take the
        # newest release of that package on PyPI instead, in the container too (url-pins.txt).
        base=$(basename "$req")
        pinned=$work/pinned-$base
        while IFS= read -r entry; do
            if [[ "$entry" =~ ^([A-Za-z0-9_.-]+)\ *@\ *[a-z]+:// ]]; then
                name=${BASH_REMATCH[1]}
                version=$("$pip" index versions --disable-pip-version-check "$name" 2>/dev/null \
                    | sed -n "s/^$name (\(.*\))\$/\1/p")
                [[ -n "$version" ]] || { echo "core-line: no release of $name on the index" >&2; exit 1; }
                log "$base: $name from a source archive is replaced by $name==$version"
                echo "$name==$version" >> "$work/url-pins.txt"
                echo "$name==$version"
            else
                echo "$entry"
            fi
        done < "$req" > "$pinned"
        # Some pins of older lines predate wheels for Python 3.13 (MarkupSafe 2.1.5 for 2.18):
        # their source distributions are built in the container (pure Python, no compiler).
        pip_download -r "$pinned" 2>/dev/null || pip_download --no-deps -r "$pinned"
    done
    pip_download setuptools wheel
    # The pip that ansible-test installs into each of its virtual environments.
    pip_version=$(sed -n "s/^ *pip='\([0-9.]*\)',\$/\1/p" \
        "$work/ansible-test-data/ansible_test/_internal/python_requirements.py" | head -n 1)
    [[ -n "$pip_version" ]] || { echo "core-line: cannot tell which pip ansible-test $core_version uses" >&2; exit 1; }
    pip_download "pip==$pip_version"
    echo "$pip_version" > "$work/pip-version"
    echo "$want_stamp" > "$stamp"
fi
pip_version=$(cat "$work/pip-version")
pip_wheel=pip-$pip_version-py3-none-any.whl

cache=$work/home/.ansible/test/cache
mkdir -p "$cache"
cp "$wheels/$pip_wheel" "$cache/"
cp "$repo_root/scripts/ansible-test-get-pip.py" "$cache/get_pip_${pip_version//./_}.py"
cp "$requirements" "$work/requirements.txt"
printf '[global]\nno-index = true\nfind-links = /wheels\ndisable-pip-version-check = true\n' > "$work/pip.conf"

cleanup() { podman rm --force --time 0 "$container" >/dev/null 2>&1 || true; }
trap cleanup EXIT
cleanup

# The real-world dumps the parsed tests read sit beside the checkout (../shared), which the
# copy of the collection does not hold.
dumps=$(cd "$repo_root/../shared/realworld-dumps" 2>/dev/null && pwd) \
    || { echo "core-line: no ../shared/realworld-dumps beside the checkout" >&2; exit 1; }
log "sanity and unit tests in $image"
# The venv is made anew when the pins change; ansible-test keeps its own venvs in HOME.
podman run --rm --name "$container" --network=none --label org.ipmasq.core-line="$line" \
    --volume "$wheels:/wheels:ro" --volume "$work/pip.conf:/etc/pip.conf:ro" \
    --volume "$work:/line" --volume "$collections_dir:/collections" \
    --volume "$dumps:/dumps:ro" --env IPMASQ_REALWORLD_DUMPS=/dumps \
    --env IPMASQ_HYPOTHESIS_DERANDOMIZE="${IPMASQ_HYPOTHESIS_DERANDOMIZE:-}" \
    --env HOME=/line/home --env PIP_WHEEL="/wheels/$pip_wheel" --env PYTHON="python$python_version" \
    --workdir /collections/ansible_collections/ipmasq/gateway \
    "$image" bash -euo pipefail -c '
        if ! cmp -s /line/requirements.txt /line/venv/requirements.txt; then
            rm -rf /line/venv
            "$PYTHON" -m venv --without-pip /line/venv
            /line/venv/bin/python "$PIP_WHEEL/pip" install --quiet -r /line/requirements.txt
            cp /line/requirements.txt /line/venv/requirements.txt
        fi
        export PATH=/line/venv/bin:$PATH
        data=$(python -c "import ansible_test, os; print(os.path.join(os.path.dirname(ansible_test.__file__), \"_data/requirements\"))")
        while IFS="=" read -r name version; do
            [ -n "$name" ] || continue
            sed -i "s|^$name *@ *[a-z]*://.*\$|$name==${version#=}|" "$data"/sanity.*.txt
        done < /line/url-pins.txt
        echo "=== ansible-test sanity, $(ansible --version | head -n 1), Python $("$PYTHON" -c "import platform; print(platform.python_version())")"
        ANSIBLE_TEST_CONTENT_ROOT=$PWD ansible-test sanity --python "${PYTHON#python}" --color no
        echo "=== unit tests"
        PYTHONPATH=/collections PY_COLORS=0 python -m pytest -p no:cacheprovider tests/unit
    '

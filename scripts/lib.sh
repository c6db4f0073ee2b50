# scripts/lib.sh — shared by scripts/test, scripts/demo and scripts/bench. Source it; do not run it.
#
# ensure_packages installs the Debian/Ubuntu packages mproc needs to build and test:
#   * nothing missing: does nothing (no network, no apt);
#   * missing and root: apt-get update, then apt-get install -y the missing ones;
#   * missing and not root: prints the exact install command and exits 1.

MPROC_PACKAGES=(cmake g++ make libboost1.81-dev libboost-filesystem1.81-dev catch2 python3 procps doxygen pkg-config gdb)

# The repository root (this file lives in <root>/scripts).
MPROC_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

mproc_log() { printf '==> %s\n' "$*" >&2; }

# True when the package is installed (dpkg's status word "installed", not "config-files" or absent).
mproc_pkg_installed() {
  local status
  status="$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)"
  [[ "$status" == *" installed" ]]
}

# Prints the missing packages of MPROC_PACKAGES, one per line. Boost comes as the Debian 12 versioned
# packages; where the archive has no libboost1.81-dev (Ubuntu), the unversioned ones stand in.
mproc_missing_packages() {
  local pkgs=("${MPROC_PACKAGES[@]}") p
  if ! mproc_pkg_installed libboost1.81-dev && ! apt-cache show libboost1.81-dev >/dev/null 2>&1; then
    pkgs=()
    for p in "${MPROC_PACKAGES[@]}"; do
      case "$p" in
        libboost1.81-dev) pkgs+=(libboost-dev) ;;
        libboost-filesystem1.81-dev) pkgs+=(libboost-filesystem-dev) ;;
        *) pkgs+=("$p") ;;
      esac
    done
  fi
  for p in "${pkgs[@]}"; do
    mproc_pkg_installed "$p" || printf '%s\n' "$p"
  done
}

ensure_packages() {
  if ! command -v dpkg-query >/dev/null 2>&1; then
    mproc_log "not a Debian/Ubuntu system (no dpkg-query): install yourself: ${MPROC_PACKAGES[*]}"
    return 0
  fi
  local missing
  mapfile -t missing < <(mproc_missing_packages)
  ((${#missing[@]} == 0)) && return 0

  if [[ "$(id -u)" -ne 0 ]]; then
    printf 'mproc needs these packages, which are not installed: %s\n' "${missing[*]}" >&2
    printf 'Install them, then run this script again:\n\n' >&2
    printf '  sudo apt-get install -y %s\n\n' "${missing[*]}" >&2
    exit 1
  fi
  mproc_log "installing: ${missing[*]}"
  apt-get update
  # After the update apt-cache knows the archive: decide the Boost packages again.
  mapfile -t missing < <(mproc_missing_packages)
  ((${#missing[@]} == 0)) && return 0
  DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
}

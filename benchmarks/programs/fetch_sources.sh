#!/usr/bin/env bash
# Fetch Debian source packages without touching /etc/apt: a private apt configuration whose deb-src entries
# are derived from this machine's own apt sources (same mirrors, suites and components, "Types: deb-src").
# Usage: fetch_sources.sh DEST PACKAGE...
set -euo pipefail
dest=$1; shift
apt_dir="$dest/.apt"
mkdir -p "$apt_dir/sources.list.d" "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial"

for f in /etc/apt/sources.list.d/*.sources; do
  [ -e "$f" ] || continue
  sed -n 's/^Types:.*\bdeb\b.*/Types: deb-src/p; /^Types:/!p' "$f" > "$apt_dir/sources.list.d/$(basename "$f")"
done
if [ -f /etc/apt/sources.list ]; then
  sed -n 's/^deb \(.*\)/deb-src \1/p' /etc/apt/sources.list > "$apt_dir/sources.list.d/from-sources-list.list"
fi

apt_opts=(
  -o "Dir::Etc::SourceList=/dev/null"
  -o "Dir::Etc::SourceParts=$apt_dir/sources.list.d"
  -o "Dir::State::Lists=$apt_dir/lists"
  -o "Dir::Cache=$apt_dir/cache"
  -o "APT::Sandbox::User=root"
)
apt-get "${apt_opts[@]}" update -qq
cd "$dest"
for package in "$@"; do
  apt-get "${apt_opts[@]}" source --download-only -qq "$package"
  dpkg-source --no-check -x "$package"_*.dsc >/dev/null
done

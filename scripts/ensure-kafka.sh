#!/usr/bin/env bash
# Installs the Apache Kafka pinned in scripts/kafka/pom.xml into the cache folder, outside the clone, unless it
# is already there, and prints the install folder (it holds `libs/`, the broker's class path, and
# `log4j2.properties`). Java 17+ and Maven are installed from Debian when missing; the jars come from Maven
# Central through Maven, nothing from anywhere else. Safe to run concurrently (one installer at a time).
set -euo pipefail
cd "$(dirname "$0")/.."
cache=${HOOKLINE_CACHE:-$HOME/.cache/hookline}
pom=scripts/kafka/pom.xml
version=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$pom")
# A change to the pom or the log config is a new install folder.
stamp=$(cat "$pom" scripts/kafka/log4j2.properties | sha256sum | cut -c1-10)
home="$cache/tools/kafka-$version-$stamp"
if [ -f "$home/installed" ]; then
  echo "$home"
  exit 0
fi

mkdir -p "$cache/tools"
exec 9>"$cache/tools/kafka.lock"
flock 9
if [ -f "$home/installed" ]; then # another installer finished while we waited
  echo "$home"
  exit 0
fi

# The major version of the `java` on PATH, 0 when there is none or it cannot tell.
java_major() {
  local v
  v=$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1 || true)
  echo "${v:-0}"
}
apt_install() {
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  echo "installing $* from Debian" >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" >&2
}
if ! command -v java >/dev/null || [ "$(java_major)" -lt 17 ]; then apt_install openjdk-17-jre-headless; fi
if ! command -v mvn >/dev/null; then apt_install maven; fi
echo "installing Apache Kafka $version into $home (Maven Central, once)" >&2
tmp=$(mktemp -d "$cache/tools/kafka-install.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
mvn -B -q -f "$pom" -Dmaven.repo.local="$cache/m2" dependency:copy-dependencies \
  -DincludeScope=runtime -DoutputDirectory="$tmp/libs" >&2
cp scripts/kafka/log4j2.properties "$tmp/"
# The jars must make a broker: ask it its version.
got=$(java -cp "$tmp/libs/*" kafka.Kafka --version 2>&1 | head -1 || true)
case "$got" in
  "$version"*) ;;
  *) echo "ensure-kafka: the installed jars report version '$got', expected $version" >&2; exit 1 ;;
esac
rm -rf "$home"
mv "$tmp" "$home"
trap - EXIT
touch "$home/installed"
echo "$home"

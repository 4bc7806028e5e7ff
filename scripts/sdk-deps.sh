#!/usr/bin/env bash
# Builds the Go and Java SDK programs the tests drive (tests/go, tests/java)
# into ${OUTRIGGER_CACHE:-$HOME/.cache/outrigger}/sdk-go-<hash>/ and
# sdk-java-<hash>/, keyed by a hash of their sources and dependency pins (so
# an edit rebuilds, a rerun does not), and links them into .tools/bin:
#   sdk-go-invoke, sdk-go-grpcapp, sdk-go-httpapp, sdk-java-invoke.jar
# Needs go (modules from the Go module proxy) and mvn + a JDK 17 (Maven Central).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cache="${OUTRIGGER_CACHE:-$HOME/.cache/outrigger}"
bin="$root/.tools/bin"
mkdir -p "$bin" "$cache"

# A short hash of the named files' paths and contents.
tree_hash() {
  (cd "$1" && find . -type f \( "${@:2}" \) -not -path './target/*' | LC_ALL=C sort |
    xargs sha256sum) | sha256sum | cut -c1-16
}

go_dir="$root/tests/go"
go_out="$cache/sdk-go-$(tree_hash "$go_dir" -name go.mod -o -name go.sum -o -name '*.go')"
if [ ! -x "$go_out/invoke" ] || [ ! -x "$go_out/grpcapp" ] || [ ! -x "$go_out/httpapp" ]; then
  command -v go >/dev/null || { echo "go is required for the Go SDK programs" >&2; exit 1; }
  t0=$(date +%s)
  tmp="$go_out.tmp.$$"
  rm -rf "$tmp" && mkdir -p "$tmp"
  (cd "$go_dir" && go mod download && CGO_ENABLED=0 go build -mod=readonly -trimpath -o "$tmp/" ./...)
  rm -rf "$go_out" && mv "$tmp" "$go_out"
  echo "Go SDK programs built in $(($(date +%s) - t0)) s: $go_out" >&2
fi
for p in invoke grpcapp httpapp; do ln -sfn "$go_out/$p" "$bin/sdk-go-$p"; done

java_dir="$root/tests/java"
java_out="$cache/sdk-java-$(tree_hash "$java_dir" -name pom.xml -o -name '*.java')"
if [ ! -f "$java_out/sdk-java-invoke.jar" ]; then
  command -v mvn >/dev/null || { echo "mvn is required for the Java SDK program" >&2; exit 1; }
  t0=$(date +%s)
  build="$root/target/sdk-java-build.$$"
  (cd "$java_dir" && mvn -B -q -DskipTests -Dsdk.build.dir="$build" package)
  mkdir -p "$java_out"
  mv -f "$build/sdk-java-invoke.jar" "$java_out/sdk-java-invoke.jar"
  rm -rf "$build"
  echo "Java SDK program built in $(($(date +%s) - t0)) s: $java_out" >&2
fi
ln -sfn "$java_out/sdk-java-invoke.jar" "$bin/sdk-java-invoke.jar"
echo "SDK programs ready in $bin"

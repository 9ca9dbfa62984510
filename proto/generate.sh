#!/usr/bin/env bash
# Regenerates the Go code of the Streamer protocol from proto/**/*.proto.
#
# Usage: bash proto/generate.sh [OUT_DIR]
#
# OUT_DIR defaults to proto/, i.e. the generated files land next to their
# .proto files (paths=source_relative). `make proto-check` passes a temporary
# directory to compare a fresh generation with the committed files.
#
# The code generators are pinned as Go tool dependencies in go.mod
# (protoc-gen-go, protoc-gen-go-grpc), so only protoc itself comes from the
# system: Debian's protobuf-compiler, which also ships the well-known types
# (google/protobuf/*.proto) under /usr/include.
set -euo pipefail

# The protoc version is recorded in the generated files' headers; a different
# one would make `make proto-check` fail on that line alone.
readonly want_protoc_version="libprotoc 3.21.12"

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-$root/proto}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"

protoc="${PROTOC:-protoc}"
wkt_include="${PROTOC_INCLUDE:-/usr/include}"

if ! command -v "$protoc" >/dev/null; then
	echo "generate.sh: $protoc not found; install it with: apt-get install protobuf-compiler" >&2
	exit 1
fi
have_protoc_version="$("$protoc" --version)"
if [[ "$have_protoc_version" != "$want_protoc_version" && "${PROTOC_ANY_VERSION:-}" != 1 ]]; then
	echo "generate.sh: found $have_protoc_version, want $want_protoc_version (Debian bookworm protobuf-compiler);" >&2
	echo "generate.sh: set PROTOC_ANY_VERSION=1 to generate anyway (the headers will differ)" >&2
	exit 1
fi
if [[ ! -f "$wkt_include/google/protobuf/struct.proto" ]]; then
	echo "generate.sh: $wkt_include/google/protobuf/struct.proto not found;" >&2
	echo "generate.sh: install protobuf-compiler (libprotobuf-dev) or set PROTOC_INCLUDE" >&2
	exit 1
fi

cd "$root"
# `go tool -n` builds the pinned generator if needed and prints its path.
gen_go="$(go tool -n protoc-gen-go)"
gen_go_grpc="$(go tool -n protoc-gen-go-grpc)"

mapfile -t protos < <(cd proto && find . -name '*.proto' -printf '%P\n' | LC_ALL=C sort)
if [[ ${#protos[@]} -eq 0 ]]; then
	echo "generate.sh: no .proto files under $root/proto" >&2
	exit 1
fi

"$protoc" \
	--plugin=protoc-gen-go="$gen_go" \
	--plugin=protoc-gen-go-grpc="$gen_go_grpc" \
	-I "$root/proto" \
	-I "$wkt_include" \
	--go_out="$out" --go_opt=paths=source_relative \
	--go-grpc_out="$out" --go-grpc_opt=paths=source_relative \
	"${protos[@]/#/$root/proto/}"

#!/usr/bin/env bash
# Seeds each fuzz target's corpus (fuzz/corpus/<target>/, not committed) from tests/fixtures and
# fuzz/seeds: the files a target takes, behind the control bytes that target reads first (see
# fuzz/src/lib.rs `control`). Idempotent; libFuzzer adds what it finds to the same folders.
set -euo pipefail
cd "$(dirname "$0")"
FX=../tests/fixtures
C=corpus
mkdir -p $C/{chat_request,messages_request,responses_request,provider_request,provider_response,provider_stream,anthropic_stream,responses_stream,config,sigv4,usage_sniffer,route_pipeline,jwt_metadata,cache_entry}

# seed TARGET NAME PREFIX_OCTAL FILE: FILE behind the control bytes given as printf octal escapes.
seed() {
  [ -f "$4" ] || return 0
  { printf "$3"; cat "$4"; } > "$C/$1/$2"
}

# Provider indexes in fuzz/src/lib.rs UPSTREAMS: 0 openai, 3 anthropic, 4 gemini, 6 bedrock.
for p in anthropic:003 gemini:004 bedrock:006; do
  dir=${p%%:*}; idx=${p##*:}
  for case in "$FX/$dir"/*/; do
    n="$dir-$(basename "$case")"
    seed chat_request "$n" "" "$case/client_request.json"
    seed provider_request "$n" "\\$idx\\200" "$case/client_request.json"
    seed provider_response "$n" "\\$idx\\000" "$case/provider_response.json"
    seed provider_stream "$n" "\\$idx\\000\\100\\200\\300\\040" "$case/provider_stream.txt"
    seed provider_stream "$n" "\\$idx\\000\\100\\200\\300\\040" "$case/provider_stream.bin"
    seed usage_sniffer "$n-json" "\\000" "$case/client_response.json"
    seed usage_sniffer "$n-sse" "\\001\\100\\200\\300\\040" "$case/client_stream.txt"
    seed route_pipeline "$n" "\\012\\000\\000\\000\\200\\100\\300" "$case/client_request.json"
  done
done
for case in "$FX"/anthropic_input/*/; do
  n="input-$(basename "$case")"
  seed chat_request "$n" "" "$case/openai_request.json"
  seed messages_request "$n" "" "$case/anthropic_request.json"
  seed provider_request "$n" "\\000\\002" "$case/anthropic_request.json"
  seed provider_request "$n-gemini" "\\004\\002" "$case/anthropic_request.json"
  seed provider_response "$n" "\\000\\200" "$case/openai_response.json"
  seed provider_stream "$n" "\\000\\200\\100\\200\\300\\040" "$case/openai_stream.txt"
  seed anthropic_stream "$n" "\\000\\100\\200\\300\\040" "$case/openai_stream.txt"
  seed usage_sniffer "$n-json" "\\002" "$case/anthropic_response.json"
  seed usage_sniffer "$n-sse" "\\003\\100\\200\\300\\040" "$case/anthropic_stream.txt"
  seed route_pipeline "$n" "\\012\\002\\000\\000\\200\\100\\300" "$case/anthropic_request.json"
done
for case in "$FX"/responses/*/; do
  n="responses-$(basename "$case")"
  seed responses_request "$n" "" "$case/client_request.json"
  seed provider_request "$n" "\\000\\003" "$case/client_request.json"
  seed provider_request "$n-anthropic" "\\003\\003" "$case/client_request.json"
  seed responses_stream "$n" "\\000\\100\\200\\300\\040" "$case/chat_stream.txt"
  seed usage_sniffer "$n-json" "\\004" "$case/response.json"
  seed usage_sniffer "$n-sse" "\\005\\100\\200\\300\\040" "$case/response_stream.txt"
  seed route_pipeline "$n" "\\012\\010\\000\\000\\200\\100\\300" "$case/client_request.json"
  seed cache_entry "$n" "\\002" "$case/chat_response.json"
  seed cache_entry "$n-stream" "\\006" "$case/chat_response.json"
done
# Envoy's metadata as captured from Envoy 1.40 (hex in the fixtures).
for f in "$FX"/jwt_metadata/*.hex; do
  python3 -c 'import sys; sys.stdout.buffer.write(bytes.fromhex(open(sys.argv[1]).read().strip()))' "$f" \
    > "$C/jwt_metadata/$(basename "$f" .hex)"
done
for f in seeds/config/*; do cp "$f" "$C/config/"; done
for f in seeds/sigv4/*; do cp "$f" "$C/sigv4/"; done

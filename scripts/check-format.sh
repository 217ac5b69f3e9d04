#!/usr/bin/env bash
# Fails when a C++ file of the tree is not formatted as .clang-format says (clang-format
# --dry-run -Werror prints each difference). Fix with: clang-format -i <file>.
set -euo pipefail
cd "$(dirname "$0")/.."
files=$(git ls-files '*.cc' '*.h' 2>/dev/null || find src include tests -name '*.cc' -o -name '*.h')
# Four parallel clang-format processes: each file is independent and the check takes seconds.
xargs -P 4 -n 16 clang-format --dry-run -Werror <<<"$files"
echo "check-format: $(wc -l <<<"$files") files formatted as .clang-format says"

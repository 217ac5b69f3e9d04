// Small text helpers shared by the annotation and flag parsers.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace kr {

// `text` without leading and trailing blanks (space, tab, newline).
std::string_view TrimBlanks(std::string_view text);

// Splits "a, b,c" on commas, trimming blanks around each item; a blank string gives {}.
std::vector<std::string> SplitList(std::string_view text);

}  // namespace kr

#include "kube_router/netpol/selector.h"

#include <gtest/gtest.h>

#include "objects.h"

namespace kr::netpol::selector_test {
namespace {

using testing::Expr;
using testing::Labels;

struct MatchCase {
  const char* what;
  k8s::LabelSelector selector;
  k8s::Labels labels;
  bool matches;
};

TEST(SelectorMatches, Table) {
  k8s::LabelSelector both = Labels({{"app", "web"}});
  both.match_expressions.push_back({"tier", "In", {"fe", "be"}});
  const MatchCase cases[] = {
      {"empty selects all", {}, {{"x", "y"}}, true},
      {"empty selects unlabelled", {}, {}, true},
      {"matchLabels hit", Labels({{"app", "web"}}), {{"app", "web"}, {"x", "1"}}, true},
      {"matchLabels wrong value", Labels({{"app", "web"}}), {{"app", "db"}}, false},
      {"matchLabels missing key", Labels({{"app", "web"}}), {}, false},
      {"In hit", Expr("ns", "In", {"x", "y"}), {{"ns", "y"}}, true},
      {"In miss", Expr("ns", "In", {"x", "y"}), {{"ns", "z"}}, false},
      {"In missing key", Expr("ns", "In", {"x"}), {}, false},
      {"NotIn hit", Expr("ns", "NotIn", {"x"}), {{"ns", "y"}}, true},
      {"NotIn missing key matches", Expr("ns", "NotIn", {"x"}), {}, true},
      {"NotIn miss", Expr("ns", "NotIn", {"x"}), {{"ns", "x"}}, false},
      {"Exists", Expr("a", "Exists"), {{"a", ""}}, true},
      {"Exists missing", Expr("a", "Exists"), {{"b", "1"}}, false},
      {"DoesNotExist", Expr("a", "DoesNotExist"), {{"b", "1"}}, true},
      {"DoesNotExist present", Expr("a", "DoesNotExist"), {{"a", "1"}}, false},
      {"labels AND expressions", both, {{"app", "web"}, {"tier", "be"}}, true},
      {"labels AND expressions, one fails", both, {{"app", "web"}, {"tier", "db"}}, false},
      {"unknown operator matches nothing", Expr("a", "Contains", {"1"}), {{"a", "1"}}, false},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(SelectorMatches(c.selector, c.labels), c.matches) << c.what;
  }
}

TEST(ValidateSelector, RejectsWhatTheApiServerRejects) {
  EXPECT_TRUE(ValidateSelector({}).ok());
  EXPECT_TRUE(ValidateSelector(Expr("a", "In", {"1"})).ok());
  EXPECT_TRUE(ValidateSelector(Expr("a", "DoesNotExist")).ok());
  auto bad = ValidateSelector(Expr("a", "Contains", {"1"}));
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.message().find("Contains"), std::string::npos);
  EXPECT_FALSE(ValidateSelector(Expr("a", "In")).ok());
  EXPECT_FALSE(ValidateSelector(Expr("a", "Exists", {"1"})).ok());
  EXPECT_FALSE(ValidateSelector(Expr("", "Exists")).ok());
}

}  // namespace
}  // namespace kr::netpol::selector_test

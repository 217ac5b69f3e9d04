// SPDX-License-Identifier: Apache-2.0
#include "manifests.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace fake_apiserver {
namespace {

using nlohmann::json;

// Plain YAML scalars are typed as YAML 1.2's core schema says (ints, floats, booleans, null);
// quoted scalars (tag "!") stay strings.
json ScalarToJson(const YAML::Node& node) {
  const std::string& s = node.Scalar();
  if (node.Tag() == "!") return s;
  if (s == "null" || s == "~" || s.empty()) return nullptr;
  if (s == "true" || s == "True") return true;
  if (s == "false" || s == "False") return false;
  json number = json::parse(s, nullptr, false);
  if (!number.is_discarded() && number.is_number()) return number;
  return s;
}

json YamlToJson(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Map: {
      json out = json::object();
      for (const auto& kv : node) out[kv.first.as<std::string>()] = YamlToJson(kv.second);
      return out;
    }
    case YAML::NodeType::Sequence: {
      json out = json::array();
      for (const auto& item : node) out.push_back(YamlToJson(item));
      return out;
    }
    case YAML::NodeType::Scalar:
      return ScalarToJson(node);
    default:
      return nullptr;
  }
}

void AddDocument(json doc, std::vector<json>* objects) {
  if (doc.is_null()) return;  // empty document between "---" separators
  if (doc.is_object() && doc.value("kind", "") == "List" && doc.contains("items") &&
      doc["items"].is_array()) {
    for (auto& item : doc["items"]) AddDocument(std::move(item), objects);
    return;
  }
  objects->push_back(std::move(doc));
}

bool LoadFile(const std::filesystem::path& path, std::vector<json>* objects, std::string* error) {
  std::ifstream in(path);
  if (!in) {
    *error = path.string() + ": cannot open";
    return false;
  }
  std::stringstream ss;
  ss << in.rdbuf();
  std::string text = ss.str();
  if (path.extension() == ".json") {
    json doc = json::parse(text, nullptr, false);
    if (doc.is_discarded()) {
      *error = path.string() + ": invalid JSON";
      return false;
    }
    AddDocument(std::move(doc), objects);
    return true;
  }
  try {
    for (const auto& doc : YAML::LoadAll(text)) AddDocument(YamlToJson(doc), objects);
  } catch (const YAML::Exception& e) {
    *error = path.string() + ": invalid YAML: " + e.what();
    return false;
  }
  return true;
}

}  // namespace

bool LoadManifests(const std::string& path, std::vector<json>* objects, std::string* error) {
  std::error_code ec;
  std::filesystem::path root(path);
  if (std::filesystem::is_directory(root, ec)) {
    std::vector<std::filesystem::path> files;
    for (const auto& e : std::filesystem::directory_iterator(root, ec)) {
      auto ext = e.path().extension();
      if (e.is_regular_file() && (ext == ".yaml" || ext == ".yml" || ext == ".json"))
        files.push_back(e.path());
    }
    std::sort(files.begin(), files.end());
    for (const auto& f : files) {
      if (!LoadFile(f, objects, error)) return false;
    }
    return true;
  }
  return LoadFile(root, objects, error);
}

}  // namespace fake_apiserver

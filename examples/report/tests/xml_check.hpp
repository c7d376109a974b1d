// A small XML 1.0 well-formedness checker for the tests (no XML library is available): parses a
// document into a tree of elements and reports the first violation with its byte offset.
//
// Checked: one root element; matching start/end tags; names; attributes quoted, unique per
// element, without '<' and with only valid references; character data without '<' or a bare '&';
// entity references limited to the five predefined ones and numeric character references;
// comments without "--"; an optional XML declaration first; processing instructions; CDATA.
// Not checked: DTDs (rejected), encodings other than UTF-8 (bytes >= 0x80 are taken as they are).
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace ropescale_test {

struct XmlElement {
  std::string name;
  std::vector<std::pair<std::string, std::string>> attributes;  ///< values with references kept
  std::vector<std::unique_ptr<XmlElement>> children;
  std::string text;  ///< concatenated character data directly inside this element

  const std::string* attribute(const std::string& key) const {
    for (const auto& kv : attributes)
      if (kv.first == key) return &kv.second;
    return nullptr;
  }
  /// Every descendant (and this element) named `tag`, in document order.
  void collect(const std::string& tag, std::vector<const XmlElement*>* out) const {
    if (name == tag) out->push_back(this);
    for (const auto& c : children) c->collect(tag, out);
  }
};

struct XmlResult {
  bool ok = false;
  std::string error;  ///< "offset N: what"
  std::unique_ptr<XmlElement> root;
};

namespace xml_detail {

class Parser {
 public:
  explicit Parser(const std::string& s) : s_(s) {}

  XmlResult run() {
    XmlResult r;
    if (!prolog()) return fail_result();
    if (!at('<')) return fail_result("expected the root element");
    r.root = element(0);
    if (!r.root) return fail_result();
    misc();
    if (!failed_ && pos_ != s_.size()) fail("content after the root element");
    if (failed_) return fail_result();
    r.ok = true;
    return r;
  }

 private:
  bool at(char c) const { return pos_ < s_.size() && s_[pos_] == c; }
  bool starts(const char* lit) const {
    return s_.compare(pos_, std::char_traits<char>::length(lit), lit) == 0;
  }
  static bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
  static bool name_start(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
           static_cast<unsigned char>(c) >= 0x80;
  }
  static bool name_char(char c) {
    return name_start(c) || (c >= '0' && c <= '9') || c == '-' || c == '.';
  }
  void skip_space() {
    while (pos_ < s_.size() && is_space(s_[pos_])) ++pos_;
  }
  bool fail(const std::string& what) {
    if (!failed_) error_ = "offset " + std::to_string(pos_) + ": " + what;
    failed_ = true;
    return false;
  }
  XmlResult fail_result(const std::string& what = "") {
    if (!what.empty()) fail(what);
    XmlResult r;
    r.error = error_;
    return r;
  }

  bool name(std::string* out) {
    if (pos_ >= s_.size() || !name_start(s_[pos_])) return fail("expected a name");
    const std::size_t b = pos_;
    while (pos_ < s_.size() && name_char(s_[pos_])) ++pos_;
    *out = s_.substr(b, pos_ - b);
    return true;
  }

  // After '&': a predefined entity or a character reference, then ';'.
  bool reference() {
    ++pos_;
    if (at('#')) {
      ++pos_;
      bool hex = false;
      if (at('x')) {
        hex = true;
        ++pos_;
      }
      std::size_t digits = 0;
      while (pos_ < s_.size()) {
        const char c = s_[pos_];
        const bool ok =
            (c >= '0' && c <= '9') || (hex && ((c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')));
        if (!ok) break;
        ++pos_;
        ++digits;
      }
      if (digits == 0) return fail("empty character reference");
    } else {
      std::string n;
      if (!name(&n)) return false;
      if (n != "amp" && n != "lt" && n != "gt" && n != "quot" && n != "apos")
        return fail("undefined entity &" + n + ";");
    }
    if (!at(';')) return fail("reference without ';'");
    ++pos_;
    return true;
  }

  bool comment() {  // at "<!--"
    pos_ += 4;
    const std::size_t end = s_.find("--", pos_);
    if (end == std::string::npos) return fail("unterminated comment");
    if (end + 2 >= s_.size() || s_[end + 2] != '>') return fail("'--' inside a comment");
    pos_ = end + 3;
    return true;
  }

  bool pi() {  // at "<?"
    pos_ += 2;
    std::string target;
    if (!name(&target)) return false;
    if (target.size() == 3 && (target[0] | 0x20) == 'x' && (target[1] | 0x20) == 'm' &&
        (target[2] | 0x20) == 'l')
      return fail("XML declaration not at the start");
    const std::size_t end = s_.find("?>", pos_);
    if (end == std::string::npos) return fail("unterminated processing instruction");
    pos_ = end + 2;
    return true;
  }

  void misc() {
    while (!failed_) {
      skip_space();
      if (starts("<!--")) {
        comment();
      } else if (starts("<?")) {
        pi();
      } else {
        return;
      }
    }
  }

  bool prolog() {
    if (starts("<?xml") && pos_ + 5 < s_.size() && is_space(s_[pos_ + 5])) {
      const std::size_t end = s_.find("?>", pos_);
      if (end == std::string::npos) return fail("unterminated XML declaration");
      if (s_.substr(pos_, end - pos_).find("version") == std::string::npos)
        return fail("XML declaration without version");
      pos_ = end + 2;
    }
    misc();
    if (starts("<!DOCTYPE")) return fail("DTDs are not supported by this checker");
    return !failed_;
  }

  bool attribute_value(std::string* out) {
    if (!at('"') && !at('\'')) return fail("attribute value not quoted");
    const char q = s_[pos_++];
    const std::size_t b = pos_;
    while (pos_ < s_.size() && s_[pos_] != q) {
      if (s_[pos_] == '<') return fail("'<' in an attribute value");
      if (s_[pos_] == '&') {
        if (!reference()) return false;
        continue;
      }
      ++pos_;
    }
    if (pos_ >= s_.size()) return fail("unterminated attribute value");
    *out = s_.substr(b, pos_ - b);
    ++pos_;
    return true;
  }

  std::unique_ptr<XmlElement> element(int depth) {
    if (depth > 256) {
      fail("nesting deeper than 256");
      return nullptr;
    }
    ++pos_;  // '<'
    auto e = std::make_unique<XmlElement>();
    if (!name(&e->name)) return nullptr;
    for (;;) {
      const std::size_t before = pos_;
      skip_space();
      if (at('/')) {
        ++pos_;
        if (!at('>')) {
          fail("expected '>' after '/'");
          return nullptr;
        }
        ++pos_;
        return e;
      }
      if (at('>')) {
        ++pos_;
        break;
      }
      if (pos_ == before) {
        fail("expected whitespace before an attribute");
        return nullptr;
      }
      std::string key, value;
      if (!name(&key)) return nullptr;
      skip_space();
      if (!at('=')) {
        fail("attribute " + key + " without '='");
        return nullptr;
      }
      ++pos_;
      skip_space();
      if (!attribute_value(&value)) return nullptr;
      if (e->attribute(key) != nullptr) {
        fail("duplicate attribute " + key);
        return nullptr;
      }
      e->attributes.emplace_back(std::move(key), std::move(value));
    }
    // Content.
    for (;;) {
      if (pos_ >= s_.size()) {
        fail("unterminated element <" + e->name + ">");
        return nullptr;
      }
      if (starts("</")) {
        pos_ += 2;
        std::string end_name;
        if (!name(&end_name)) return nullptr;
        if (end_name != e->name) {
          fail("</" + end_name + "> closes <" + e->name + ">");
          return nullptr;
        }
        skip_space();
        if (!at('>')) {
          fail("expected '>' in an end tag");
          return nullptr;
        }
        ++pos_;
        return e;
      }
      if (starts("<!--")) {
        if (!comment()) return nullptr;
      } else if (starts("<![CDATA[")) {
        const std::size_t end = s_.find("]]>", pos_);
        if (end == std::string::npos) {
          fail("unterminated CDATA");
          return nullptr;
        }
        e->text += s_.substr(pos_ + 9, end - pos_ - 9);
        pos_ = end + 3;
      } else if (starts("<?")) {
        if (!pi()) return nullptr;
      } else if (at('<')) {
        auto child = element(depth + 1);
        if (!child) return nullptr;
        e->children.push_back(std::move(child));
      } else if (at('&')) {
        const std::size_t b = pos_;
        if (!reference()) return nullptr;
        e->text += s_.substr(b, pos_ - b);
      } else {
        if (starts("]]>")) {
          fail("']]>' in character data");
          return nullptr;
        }
        e->text += s_[pos_++];
      }
    }
  }

  const std::string& s_;
  std::size_t pos_ = 0;
  bool failed_ = false;
  std::string error_;
};

}  // namespace xml_detail

/// Parses `text` as a standalone XML document.
inline XmlResult parse_xml(const std::string& text) { return xml_detail::Parser(text).run(); }

}  // namespace ropescale_test

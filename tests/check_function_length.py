#!/usr/bin/env python3
"""No function in include/ropescale/ is longer than a limit (lines from its opening brace to its
closing one). Usage: check_function_length.py INCLUDE_DIR [--max N] [--exempt PATH ...] [--top K]

Comments, string and character literals and preprocessor lines are blanked first; then every
brace opened outside a function is classified by the text before it: namespaces, classes,
structs, unions, enums and initializers are scopes to look into, anything else with a parameter
list is a function, measured as a whole (lambdas and local classes inside it count towards it).
"""
import argparse
import os
import re
import sys

SCOPE_HEAD = re.compile(r"^(?:template\s*<.*>\s*)?(?:namespace|struct|class|union|enum)\b|"
                        r"^extern\b|^namespace\b", re.S)
# A constructor's member initializer list: ") :" or ") noexcept :" before the members.
INIT_LIST = re.compile(r"\)\s*(?:noexcept\s*)?:(?!:)")
ACCESS = re.compile(r"^\s*(?:public|private|protected)\s*:(?!:)")


def blank(text):
    """Comments, literals and preprocessor lines replaced by spaces (newlines kept)."""
    out = []
    i, n = 0, len(text)
    line_start = True
    while i < n:
        c = text[i]
        if line_start and c == "#" or (line_start and c in " \t" and text[i:].lstrip(" \t")[:1] == "#"):
            # a preprocessor line, with its continuations
            while i < n:
                if text[i] == "\n" and text[i - 1] != "\\":
                    break
                out.append("\n" if text[i] == "\n" else " ")
                i += 1
            continue
        if text.startswith("//", i):
            while i < n and text[i] != "\n":
                out.append(" ")
                i += 1
            continue
        if text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.extend("\n" if ch == "\n" else " " for ch in text[i:j])
            i = j
            continue
        m = re.match(r'R"([^(\s]*)\(', text[i:i + 20]) if c == "R" else None
        if m:
            end = text.find(")" + m.group(1) + '"', i)
            j = n if end < 0 else end + len(m.group(1)) + 2
            out.extend("\n" if ch == "\n" else " " for ch in text[i:j])
            i = j
            continue
        if c in "\"'" and not (c == "'" and i > 0 and text[i - 1].isalnum()):  # 1'000 separators
            j = i + 1
            while j < n and text[j] != c:
                j += 2 if text[j] == "\\" else 1
            out.append(c)
            out.extend(" " for _ in text[i + 1:j])
            out.append(c)
            i = j + 1
            continue
        line_start = c == "\n" or (line_start and c in " \t")
        out.append(c)
        i += 1
    return "".join(out)


def functions(path):
    """(name, first line, last line) of every function that is not inside another function."""
    text = blank(open(path, encoding="utf-8").read())
    found = []
    stack = []  # per open brace: ("scope" | "function" | "other", start line, name)
    head_start = 0
    line = 1
    for i, c in enumerate(text):
        if c == "\n":
            line += 1
        elif c in ";":
            if not any(k == "function" for k, _, _ in stack):
                head_start = i + 1
        elif c == "{":
            if any(k in ("function", "other", "init") for k, _, _ in stack):
                stack.append(("other", line, ""))
                continue
            head = ACCESS.sub("", text[head_start:i]).strip()
            if INIT_LIST.search(head) and re.search(r"[\w>]\s*$", head):
                stack.append(("init", line, ""))  # a member's brace initializer: x_{...}
                continue
            if SCOPE_HEAD.search(head):
                stack.append(("scope", line, ""))
            elif "(" in head and not head.rstrip().endswith("=") and "=" not in head.split("(")[0]:
                names = re.findall(r"(~?[A-Za-z_]\w*|operator\s*\S+?)\s*\(", head)
                stack.append(("function", line, names[0] if names else "?"))
            else:
                stack.append(("other", line, ""))
            head_start = i + 1
        elif c == "}":
            if not stack:
                continue
            kind, start, name = stack.pop()
            if kind == "function":
                found.append((name, start, line))
            if kind != "init" and not any(k in ("function", "init") for k, _, _ in stack):
                head_start = i + 1
    return found


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("include_dir")
    ap.add_argument("--max", type=int, default=120)
    ap.add_argument("--exempt", nargs="*", default=[])
    ap.add_argument("--top", type=int, default=5)
    args = ap.parse_args()
    rows = []
    for root, _, files in os.walk(args.include_dir):
        for f in sorted(files):
            if f.endswith((".hpp", ".inc", ".h")):
                path = os.path.join(root, f)
                rel = os.path.relpath(path, args.include_dir)
                for name, first, last in functions(path):
                    rows.append((last - first + 1, rel, first, name))
    rows.sort(reverse=True)
    exempt = set(args.exempt)
    too_long = [r for r in rows if r[0] > args.max and r[1] not in exempt]
    print("longest functions (lines):")
    for n, rel, first, name in rows[:args.top]:
        print(f"  {n:5d}  {rel}:{first}  {name}{'  (exempt)' if rel in exempt else ''}")
    checked = [r for r in rows if r[1] not in exempt]
    if checked:
        n, rel, first, name = checked[0]
        print(f"longest outside the exempt files: {n} lines, {rel}:{first} {name}")
    for n, rel, first, name in too_long:
        print(f"error: {rel}:{first}: {name} is {n} lines long (limit {args.max})")
    print(f"{len(rows)} functions in {args.include_dir}")
    return 1 if too_long else 0


if __name__ == "__main__":
    sys.exit(main())

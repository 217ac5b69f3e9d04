#!/usr/bin/env python3
"""Finds classes, structs and unions defined twice under one qualified name in different files.

Two different definitions of one name break C++'s one-definition rule: neither the compiler (it
sees one per translation unit) nor the linker says so; it keeps one copy of each inline member
and the program mixes them. e9e2353 moved the HTTP client into kr::net, which already had a
server-side kr::net::HttpResponse: the agent crashed on its first /healthz. This scans src/ and
include/ (what links into the agent and its libraries), ignoring anonymous namespaces and local
classes, which have no linkage.

  scripts/check-odr-names.py [--root DIR]     exit 1 and list every name defined twice
  scripts/check-odr-names.py --self-test      proves it finds a duplicate and ignores the rest
"""
import argparse
import os
import re
import sys
import tempfile

_NAMESPACE = re.compile(r'^(?:inline\s+)?namespace\s*([\w:]*)\s*$')
_RECORD = re.compile(
    r'^(?:template\s*<.*>\s*)?(?:struct|class|union)\s+(?:\[\[[^\]]*\]\]\s*)?(?:alignas\s*\([^)]*\)\s*)?'
    r'([\w:]+(?:\s*<.*>)?)\s*(?:final\s*)?(?::.*)?$', re.S)
_ENUM = re.compile(r'^enum\b')


def strip_code(text):
    """Removes comments, string and character literals and preprocessor lines."""
    out, i, n = [], 0, len(text)
    at_line_start = True
    while i < n:
        c = text[i]
        if at_line_start and c == '#':
            while i < n and text[i] != '\n':  # directives, with their continuation lines
                i += 2 if text[i] == '\\' else 1
            continue
        if c == '/' and text.startswith('//', i):
            i = text.find('\n', i)
            i = n if i < 0 else i
            continue
        if c == '/' and text.startswith('/*', i):
            j = text.find('*/', i + 2)
            i = n if j < 0 else j + 2
            out.append(' ')
            continue
        if c == 'R' and text.startswith('R"', i):  # raw string R"delim( ... )delim"
            k = text.find('(', i)
            delim = text[i + 2:k]
            j = text.find(')' + delim + '"', k)
            i = n if j < 0 else j + len(delim) + 2
            out.append('""')
            continue
        if c in '"\'':
            j = i + 1
            while j < n and text[j] != c:
                j += 2 if text[j] == '\\' else 1
            i = j + 1
            out.append('""')
            continue
        if c == '\n':
            at_line_start = True
        elif not c.isspace():
            at_line_start = False
        out.append(c)
        i += 1
    return ''.join(out)


def definitions(text):
    """Yields the qualified name of every class/struct/union with linkage defined in text."""
    code = strip_code(text)
    scopes = []  # (kind, [names]): kind in namespace, anon, record, other
    statement = []
    for c in code:
        if c == '{':
            head = ' '.join(''.join(statement).split())
            statement = []
            m = _NAMESPACE.match(head)
            if m:
                scopes.append(('namespace', m.group(1).split('::')) if m.group(1) else ('anon', []))
                continue
            m = _RECORD.match(head)
            if m and '(' not in head.split(':')[0]:
                name = re.sub(r'\s+', '', m.group(1))
                if all(kind in ('namespace', 'record') for kind, _ in scopes):
                    yield '::'.join([part for _, names in scopes for part in names] + [name])
                scopes.append(('record', [name]))
                continue
            scopes.append(('other' if not _ENUM.match(head) else 'record', []))
        elif c == '}':
            if scopes:
                scopes.pop()
            statement = []
        elif c == ';':
            statement = []
        else:
            statement.append(c)


def scan(root):
    found = {}
    for top in ('include', 'src'):
        for directory, _, files in os.walk(os.path.join(root, top)):
            for f in sorted(files):
                if not f.endswith(('.h', '.cc')):
                    continue
                path = os.path.join(directory, f)
                with open(path, encoding='utf-8', errors='replace') as handle:
                    for name in definitions(handle.read()):
                        found.setdefault(name, set()).add(os.path.relpath(path, root))
    return {name: files for name, files in found.items() if len(files) > 1}


def report(duplicates):
    for name, files in sorted(duplicates.items()):
        print(f'check-odr-names: {name} is defined in {len(files)} files: '
              + ', '.join(sorted(files)), file=sys.stderr)


def self_test():
    with tempfile.TemporaryDirectory() as root:
        os.makedirs(os.path.join(root, 'include/x'))
        os.makedirs(os.path.join(root, 'src/y'))
        files = {
            'include/x/client.h': 'namespace kr::net {\nstruct HttpResponse {\n  int a;\n};\n'
                                  'class Outer { struct Inner { int b; }; };\n}\n',
            'include/x/server.h': '// struct HttpResponse { in a comment }\n#define S "struct X {"\n'
                                  'namespace kr::net {\nstruct HttpResponse { int c; };\n'
                                  'struct Forward;\n}\n',
            'src/y/a.cc': 'namespace kr::net {\nnamespace {\nstruct Local { int d; };\n}\n'
                          'void F() { struct InFunction { int e; }; }\n'
                          'class Outer::Inner2 { };\n}\n',
            'src/y/b.cc': 'namespace kr::net {\nnamespace {\nstruct Local { int f; };\n}\n'
                          'void G() { struct InFunction { int g; }; }\n'
                          'const char* s = R"(struct Outer { )";\n}\n',
        }
        for path, text in files.items():
            with open(os.path.join(root, path), 'w') as handle:
                handle.write(text)
        got = scan(root)
        want = {'kr::net::HttpResponse': {'include/x/client.h', 'include/x/server.h'}}
        if got != want:
            print(f'check-odr-names self-test: found {got}, expected {want}', file=sys.stderr)
            return 1
    print('check-odr-names self-test: a duplicate is found; anonymous, local, forward-declared, '
          'commented and quoted names are not')
    return 0


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--root', default=os.path.join(os.path.dirname(__file__), '..'))
    parser.add_argument('--self-test', action='store_true')
    args = parser.parse_args()
    if args.self_test:
        return self_test()
    duplicates = scan(args.root)
    report(duplicates)
    if duplicates:
        return 1
    print('check-odr-names: no class, struct or union is defined twice under one name')
    return 0


if __name__ == '__main__':
    sys.exit(main())

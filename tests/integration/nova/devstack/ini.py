"""The ini functions of devstack's inc/ini-config, for the plugin test:
multi-valued options kept as repeated lines, like devstack writes them.

    ini.py get|getmulti FILE SECTION OPTION
    ini.py set FILE SECTION OPTION VALUE
    ini.py add FILE SECTION OPTION VALUE...     (a line per value)
"""

import os
import re
import sys

_SECTION = re.compile(r'^\[([^\]]+)\]\s*$')
_OPTION = re.compile(r'^\s*([^#;=\s][^=]*?)\s*=\s*(.*)$')


def _read(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return f.read().splitlines()


def _find(lines, section, option):
    """(index of the section line or None, indexes of the option's lines)."""
    current, start, found = None, None, []
    for i, line in enumerate(lines):
        m = _SECTION.match(line)
        if m:
            current = m.group(1)
            if current == section and start is None:
                start = i
            continue
        m = _OPTION.match(line)
        if m and current == section and m.group(1) == option:
            found.append(i)
    return start, found


def _values(lines, found):
    return [_OPTION.match(lines[i]).group(2) for i in found]


def main(argv):
    cmd, path, section, option = argv[1:5]
    values = argv[5:]
    lines = _read(path)
    start, found = _find(lines, section, option)
    if cmd == 'get':
        vals = _values(lines, found)
        print(vals[-1] if vals else '')
        return
    if cmd == 'getmulti':
        print('\n'.join(_values(lines, found)))
        return
    new = ['%s = %s' % (option, v) for v in values]
    if cmd == 'set' and found:
        lines[found[0]] = new[0]
        for i in reversed(found[1:]):
            del lines[i]
    elif start is None:
        lines += ['[%s]' % section] + new
    else:
        at = (found[-1] if found else start) + 1
        lines[at:at] = new
    with open(path, 'w') as f:
        f.write('\n'.join(lines) + '\n')


if __name__ == '__main__':
    main(sys.argv)

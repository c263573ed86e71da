"""Ordering things that must come after others (scripts by metadata.ini, callbacks by their Before/After): a stable
depth-first order, with circular requirements dropped so those items keep their given order.

`after[i]` is the set of indexes that must come before item i.
"""
from __future__ import annotations


def _reachable(after: list[set[int]], start: int) -> set[int]:
    seen, todo = set(), [start]
    while todo:
        for dep in after[todo.pop()]:
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return seen


def drop_cycles(after: list[set[int]]) -> list[list[int]]:
    """Remove the relations among items that would each have to come before the other (in place); the groups found,
    for the caller's warning."""
    reach = [_reachable(after, i) for i in range(len(after))]
    done: set[int] = set()
    groups = []
    for i in range(len(after)):
        if i in done or i not in reach[i]:
            continue
        group = sorted(j for j in reach[i] if i in reach[j])
        done.update(group)
        for j in group:
            after[j].difference_update(group)
        groups.append(group)
    return groups


def dependencies_first(after: list[set[int]]) -> list[int]:
    """A depth-first order (the graph has no cycles left): each index after its dependencies, otherwise in index order."""
    order: list[int] = []
    seen: set[int] = set()
    for root in range(len(after)):
        if root in seen:
            continue
        seen.add(root)
        stack = [(root, iter(sorted(after[root])))]
        while stack:
            node, deps = stack[-1]
            dep = next((d for d in deps if d not in seen), None)
            if dep is None:
                stack.pop()
                order.append(node)
            else:
                seen.add(dep)
                stack.append((dep, iter(sorted(after[dep]))))
    return order

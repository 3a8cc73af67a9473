"""Filter expressions: say which events you want, in the style of Falco conditions, over lbd's own
field names (those of the JSON output).

    f = lbd.filter.compile("syscall in (open, openat) and arg.filename startswith /etc/ "
                           "and not comm in (sshd, login)")
    mask = f(batch)                 # numpy bool per event of the batch: a stage (STYLE.md)
    f.plan.open_params()            # what the kernel can decide: {"syscalls": ["open", "openat"],
                                    #  "filter_comms": ["login", "sshd"]}

Language (lbd.filter.syntax has the grammar, lbd.filter.fields the fields and their meaning):

* tests: ``FIELD OP VALUE`` with OP one of ``= != < <= > >= contains startswith endswith glob``,
  ``FIELD in (V1, V2, ...)``, or a lone yes/no field (``failed``);
* ``and``, ``or``, ``not`` (loosest to tightest: or, and, not) and parentheses;
* values are bare words (``/etc/``, ``-1``, ``EACCES``, ``10.0.0.0/8``) or quoted ("a b", 'x,y')
  when they hold spaces, commas, parentheses or quotes;
* fields: syscall nr dir res failed errno latency ts pid tid ppid uid gid comm pcomm user group
  cmdline exe fd.name arg.NAME sockaddr.ip sockaddr.port sockaddr.family sockaddr.path, and the
  header fields cgroup_id pidns mntns loginuid where the records carry them;
* a test on a value an event does not have (another syscall's argument, no socket address)
  fails, ``!=`` included; ``not`` of it passes.

Errors are `FilterError` (a ValueError): one line, then the expression with a caret under the
column (`.column`, 1-based; `.pos`, 0-based offset).  compile() checks names, operators and values;
applying a filter checks what depends on the batch (enrichment for cmdline, exe, pcomm, user,
group, fd.name; header fields the records lack).

Compiled form:

* `Filter.__call__(batch)` -> mask, vectorised (lbd.filter.evaluate; text over byte spans in
  lbd.filter.spans, with the compiled loop lbd._filter when it is built);
* `Filter.plan`: a `KernelPlan` (lbd.filter.plan), the part the kernel can apply before records
  are written: syscalls, pids, comms, uids and failed, each only as far as the expression implies
  it, so that the kernel never drops an event the filter keeps.  User space still applies the
  whole filter: the plan only saves the records' cost.

The plain per-event definition the tests hold the evaluator to is lbd._testing.filter_reference.
"""
from __future__ import annotations

from lbd.filter.fields import FIELDS, resolve
from lbd.filter.plan import KernelPlan, derive
from lbd.filter.syntax import FilterError, parse

__all__ = ["Filter", "FilterError", "KernelPlan", "compile", "parse", "FIELDS"]


class Filter:
    """A compiled filter expression: `mask = f(batch)`, `f.plan`, `f.expression`.

    `needs_enrichment`: it reads a field only the enrichment has (applying it to a batch without
    enrichment raises FilterError naming that field).  `fields`: the names it reads.  Thread-safe
    to call; holds no batch between calls."""

    def __init__(self, expression: str):
        from lbd.filter.evaluate import Evaluator

        self.expression = expression
        self.tree = parse(expression)
        self.ir = resolve(self.tree, expression)
        self.plan: KernelPlan = derive(self.ir)
        self.fields = frozenset(_fields(self.ir))
        self.needs_enrichment = any(FIELDS[n].enriched for n in self.fields if n in FIELDS)
        self._eval = Evaluator(self.ir, expression)

    def __call__(self, batch):
        """numpy bool[len(batch)]: the events the expression keeps."""
        return self._eval(batch)

    def __repr__(self) -> str:
        return f"Filter({self.expression!r})"


def _fields(ir):
    from lbd.filter.fields import PAnd, PNot, POr, Pred

    if isinstance(ir, Pred):
        yield ir.field.name
    elif isinstance(ir, (PAnd, POr)):
        for x in ir.items:
            yield from _fields(x)
    elif isinstance(ir, PNot):
        yield from _fields(ir.item)


def compile(expression: str) -> Filter:  # noqa: A001 - as re.compile
    """Parse, check and compile a filter expression (FilterError when it is not valid)."""
    return Filter(expression)

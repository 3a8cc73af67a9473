"""Push a configuration's ``filter`` into the kernel: the open_params the probe applies.

    cfg = Config.from_dict({"filter": "syscall = openat and arg.filename startswith /etc/"})
    kcfg = kernel_config(cfg)      # syscalls: [openat] (and the user's other keys, narrowed)
    f = compiled(cfg)              # the whole filter, for user space (None without one)

The filter's KernelPlan (lbd.filter.plan) says what every event the expression keeps satisfies:
its syscall, pid, comm, uid, failed or not.  kernel_config() narrows the user's own kernel
filters by it, never widening one and never dropping an event the filter keeps:

* keep-sets (``syscalls`` or the interest file's selection, ``only_pids``, ``only_comms``,
  ``only_uids``) meet the plan's: the user's set intersected with the plan's, or the plan's when
  the user gave none;
* drop-sets (``filter_pids``, ``filter_comms``, ``filter_uids``) take the plan's entries as well,
  while the union fits the kernel's maps (else the user's set stays: capturing more is safe);
* ``failed``: True adds ``failed_only``, False ``drop_failed``;
* an expression that can never match, or keep-sets that meet in nothing, make ``drop_mode``.
* ``path_prefixes``: the plan's entries for the syscalls the user's own ``path_prefixes`` do not
  name, while the whole fits the kernel's map (64 entries); a syscall with a prefix longer than
  ``str_max`` (which could never match the captured bytes) is left unconstrained.

State records are not affected: with ``track_state`` the probe still captures the state syscalls
(fork, exec, fd creation and closing) of every process for the tables, flagged and not output, so
the context the filter and Falco's rules read stays exact: an ``openat`` outside the path
prefixes still reaches the fd table (as a state record), though not the output.

User space applies the whole filter to every batch (``compiled(cfg)``); the kernel only saves
the cost of records the filter would drop.
"""
from __future__ import annotations

from lbd import record, syscalls
from lbd.config import MAX_PREFIXES, Config
from lbd.filter.fields import SYSCALL_NAMES
from lbd.filter.plan import LIMITS, KernelPlan

__all__ = ["kernel_config", "compiled", "plan_of"]

_UID_MAX = (1 << 32) - 2


def compiled(cfg: Config):
    """The configuration's filter compiled (lbd.filter.Filter), or None when it has none."""
    text = cfg.open.filter
    if not text or not text.strip():
        return None
    from lbd.filter import compile as compile_filter

    return compile_filter(text)


def plan_of(cfg: Config) -> KernelPlan | None:
    f = compiled(cfg)
    return None if f is None else f.plan


def _selection(cfg: Config) -> frozenset[str]:
    """The syscall names the configuration selects without its filter (probe.resolve_selection)."""
    from lbd.probe import resolve_selection

    return frozenset(syscalls.lookup(nr).name for nr in resolve_selection(cfg))


def kernel_config(cfg: Config) -> Config:
    """cfg with its filter's kernel plan merged into its kernel filters (cfg itself when it has no
    filter or the plan adds nothing).  See the module docstring for the rules."""
    plan = plan_of(cfg)
    if plan is None:
        return cfg
    o = cfg.open
    if plan.matches_nothing:
        return cfg.replace(drop_mode=True)
    changes: dict = {}

    # syscalls: the selection met with the plan's real syscalls (the process-tree records are not
    # syscalls: the probe always writes them)
    if plan.syscalls is not None or plan.drop_syscalls:
        sel = _selection(cfg)
        want = sel
        if plan.syscalls is not None:
            real = {n for n in plan.syscalls if SYSCALL_NAMES[n] < record.NR_SCHED_FORK}
            only_sched = not real
            want = sel & real if not only_sched else sel
        else:
            only_sched = False
        want = want - set(plan.drop_syscalls)
        if not want and not only_sched:
            return cfg.replace(drop_mode=True)
        if want and want != sel and len(want) <= LIMITS["syscalls"]:
            changes["syscalls"] = sorted(want)

    for key, lim in (("pids", LIMITS["pids"]), ("comms", LIMITS["comms"]), ("uids", LIMITS["uids"])):
        keep_plan = getattr(plan, f"only_{key}")
        drop_plan = getattr(plan, f"filter_{key}")
        if key == "uids":                      # the kernel's maps take uids up to 2^32 - 2
            if keep_plan is not None and any(v > _UID_MAX for v in keep_plan):
                keep_plan = None
            drop_plan = frozenset(v for v in drop_plan if v <= _UID_MAX)
        keep_user = tuple(getattr(o, f"only_{key}"))
        drop_user = tuple(getattr(o, f"filter_{key}"))
        if keep_plan is not None and len(keep_plan) <= lim:
            if keep_user:
                met = [v for v in keep_user if v in keep_plan]
                if not met and not (key == "pids" and o.only_tids):
                    return cfg.replace(drop_mode=True)
                if met and len(met) < len(keep_user):
                    changes[f"only_{key}"] = met
            else:
                changes[f"only_{key}"] = sorted(keep_plan)
        if drop_plan:
            union = list(drop_user) + sorted(v for v in drop_plan if v not in drop_user)
            if len(union) <= lim and len(union) > len(drop_user):
                changes[f"filter_{key}"] = union

    if plan.path_prefixes:
        mine = {e.split(":", 1)[0] for e in o.path_prefixes}
        too_long = {n for n, _, p in plan.path_prefixes if len(p.encode("utf-8")) > o.str_max}
        add = [f"{n}:{a}:{p}" for n, a, p in sorted(plan.path_prefixes) if n not in mine | too_long]
        if add and len(o.path_prefixes) + len(add) <= MAX_PREFIXES:
            changes["path_prefixes"] = list(o.path_prefixes) + add

    if plan.failed is True and not o.failed_only:
        if o.drop_failed:
            return cfg.replace(drop_mode=True)
        changes["failed_only"] = True
    elif plan.failed is False and not o.drop_failed:
        if o.failed_only:
            return cfg.replace(drop_mode=True)
        changes["drop_failed"] = True
    return cfg.replace(**changes) if changes else cfg

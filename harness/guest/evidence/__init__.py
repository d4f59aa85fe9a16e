"""Evidence from the stack for every case: what the kernel counted and dropped while it ran.

- `snmp` (/proc/net/snmp, netstat, snmp6: what nstat reads), `rtnl` + `ethtool` ->
  `devstats` (IFLA_STATS64 and driver statistics per device), `softnet`
  (/proc/net/softnet_stat per CPU), `snapshot` (one namespace's counters and identity,
  and the change between two);
- `drops` (bpf/drop_reasons.bpf.c on skb:kfree_skb: drops by namespace, reason and
  location; `btf` names the reasons from the running kernel, `kallsyms` the locations
  where the program cannot);
- `model` (the typed, JSON-serialisable result and its text rendering);
- `case` (`CaseEvidence`: the agent's before()/after() around each forked case, and the
  `EvidencePlugin` that has the case process's namespaces read at its teardown);
- `server` (`EvidenceServer`: the agent's CaseEvidence run by a process of its own that
  never forks, working while the agent forks and checks each case);
- `fixture` (`stack_counters`: the same view inside a case, to assert on).

Import the submodules themselves: the host reads `model` (to render the evidence of a
verdict) without loading the rest.
"""

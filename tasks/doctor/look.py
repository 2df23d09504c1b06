"""The doctor's deploy, run by pyinfra (tasks/doctor): on each host, what it is and root through
sudo as a deploy gets them, then its listeners and its services' units and probes, read in one
command each; it declares no operation, so nothing is changed."""

from pyinfra import host

from tasks import access, doctor, hostos, run, stack
from tasks.doctor.facts import Probes, ServiceStates
from tasks.facts import Listeners
from tasks.registry import MLX_GROUP, PROXY_GROUP

this_run = run.current()
r = this_run.registry
system = this_run.systems[host.name] = hostos.check([g for g in (PROXY_GROUP, MLX_GROUP) if g in host.groups])
access.escalate(system)
names = [doctor.job_name(system, p.unit, p.owners) for s in stack.services(host.groups) for p in s.ports(r, host.name)]
this_run.looked[host.name] = doctor.report(
    r,
    host.name,
    system,
    host.get_fact(Listeners),
    host.get_fact(ServiceStates, units=tuple(dict.fromkeys(names))),
    host.get_fact(Probes, probes=tuple(doctor.probes(r, host.name, system))),
)

#!/usr/bin/env python3
"""Turn `medianest dump-contexts` output into an Ansible playbook (scripts/bench/ansible/run.sh).

One `ansible.builtin.template` task per render job, as a user would write it by hand: the
template file as `src`, the output file under --out as `dest`, the job's context as the
task's `vars`, and the whitespace settings of medianest's renderer (`trim_blocks`,
`lstrip_blocks`; Ansible keeps a template's trailing newlines itself). Template paths are
relative to the `templates/` folder next to the playbook, which is also where Ansible looks
for `{% include %}`d templates.

The parent directories of the outputs are created here, before Ansible runs, so the timed
playbook does nothing but template the files.
"""

import argparse
import json
import os

import yaml


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--contexts", required=True, help="JSON lines from `medianest dump-contexts`")
    ap.add_argument("--out", required=True, help="the folder Ansible writes the files into")
    ap.add_argument("--playbook", required=True, help="the playbook to write")
    args = ap.parse_args()

    out = os.path.abspath(args.out)
    with open(args.contexts, encoding="utf-8") as f:
        jobs = [json.loads(line) for line in f if line.strip()]

    tasks = []
    for job in jobs:
        dest = os.path.join(out, job["path"])
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        tasks.append(
            {
                "name": job["path"],
                "ansible.builtin.template": {
                    "src": job["template"],
                    "dest": dest,
                    "mode": "0644",
                    "trim_blocks": True,
                    "lstrip_blocks": True,
                },
                "vars": job["context"],
            }
        )
    play = [
        {
            "name": f"medianest templates with ansible.builtin.template ({len(tasks)} files)",
            "hosts": "localhost",
            "connection": "local",
            "gather_facts": False,
            "tasks": tasks,
        }
    ]
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    with open(args.playbook, "w", encoding="utf-8") as f:
        yaml.dump(play, f, Dumper=dumper, sort_keys=False, allow_unicode=True, width=1 << 20)
    print(f"playbook: {len(tasks)} template tasks, {len({j['template'] for j in jobs})} templates")


if __name__ == "__main__":
    main()

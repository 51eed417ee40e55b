#!/usr/bin/python3
"""Drive Debian's cloud-init (22.4) against maasemu's fake MAAS, as a machine would.

Reads a JSON list of steps on stdin and prints a JSON list of results, one per step.
Every network exchange goes through cloud-init's own code:

  {"op": "cmdline_url", "url": U, "path": P}
      cloudinit.cmd.main.attempt_cmdline_url for a kernel command line carrying
      cloud-config-url=U (writes P, as 91_kernel_cmdline_url.cfg), then the file is
      read as cloud-init reads cloud.cfg.d. The config becomes the current config.
  {"op": "read_seed", "metadata_url": M}
      DataSourceMAAS.read_maas_seed_url with the OAuth helper the datasource builds from
      the current config's datasource.MAAS (metadata_url replaced by M when given).
  {"op": "datasource", "metadata_url": M, "cloud_dir": D}
      DataSourceMAAS itself (wait_for_metadata_service, then the seed read) with
      sys_cfg {"datasource": {"MAAS": ...}}.
  {"op": "events", "events": [{"event_type", "name", "description", "result", "files"}]}
      cloudinit.reporting.handlers.WebHookHandler configured from the current config's
      reporting.maas, publishing ReportingEvent / FinishReportingEvent (post_files), then
      flush().
"""

import base64
import json
import logging
import os
import sys

from cloudinit import helpers, util
from cloudinit.cmd import main as ci_main
from cloudinit.reporting import events, handlers
from cloudinit.sources import DataSourceMAAS as ds

logging.basicConfig(stream=sys.stderr, level=logging.DEBUG)


def b64(v):
    if v is None:
        return None
    if isinstance(v, str):
        v = v.encode()
    return base64.b64encode(v).decode()


def main():
    steps = json.load(sys.stdin)
    cfg = {}
    out = []
    for step in steps:
        op = step["op"]
        res = {"op": op}
        try:
            if op == "cmdline_url":
                cmdline = "ro cloud-config-url=%s" % step["url"]
                level, msg = ci_main.attempt_cmdline_url(step["path"], network=True, cmdline=cmdline)
                res["message"] = msg
                res["written"] = os.path.exists(step["path"])
                if res["written"]:
                    cfg = util.read_conf(step["path"])
                    res["config"] = cfg
            elif op == "read_seed":
                mcfg = dict(cfg["datasource"]["MAAS"])
                if step.get("metadata_url"):
                    mcfg["metadata_url"] = step["metadata_url"]
                helper = ds.get_oauth_helper(mcfg)
                ud, md, vd = ds.read_maas_seed_url(mcfg["metadata_url"], read_file_or_url=helper.readurl, retries=1)
                res["user_data"] = b64(ud)
                res["meta_data"] = md
                res["vendor_data"] = vd
            elif op == "datasource":
                mcfg = dict(cfg["datasource"]["MAAS"])
                if step.get("metadata_url"):
                    mcfg["metadata_url"] = step["metadata_url"]
                mcfg["max_wait"] = 10
                mcfg["timeout"] = 5
                paths = helpers.Paths({"cloud_dir": step["cloud_dir"], "run_dir": step["cloud_dir"]})
                source = ds.DataSourceMAAS({"datasource": {"MAAS": mcfg}}, None, paths)
                res["found"] = bool(source._get_data())
                res["user_data"] = b64(source.userdata_raw)
                res["meta_data"] = source.metadata
                res["instance_id"] = source.get_instance_id()
            elif op == "events":
                rep = dict(cfg["reporting"]["maas"])
                rep.pop("type")
                hook = handlers.WebHookHandler(**rep)
                for ev in step["events"]:
                    if ev["event_type"] == "finish":
                        e = events.FinishReportingEvent(ev["name"], ev["description"], result=ev.get("result", "SUCCESS"),
                                                        post_files=ev.get("files"))
                    else:
                        e = events.ReportingEvent(ev["event_type"], ev["name"], ev["description"])
                    hook.publish_event(e)
                hook.flush()
                res["published"] = len(step["events"])
            else:
                raise ValueError("unknown op %r" % op)
        except Exception as e:  # the test reports what failed, with cloud-init's words
            res["error"] = "%s: %s" % (type(e).__name__, e)
        out.append(res)
    json.dump(out, sys.stdout, default=str)


if __name__ == "__main__":
    main()

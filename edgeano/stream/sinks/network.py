"""The line sinks (--mqtt, --opcua, --http) checked before anything opens, made after the sources did.

`plan_network_sinks(options)` parses every URL (one line naming the flag when it is wrong, exit 2)
and checks the client library is installed; `plan.make(run_id, log)` builds the sink.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List


@dataclass
class SinkPlan:
    flag: str
    make_fn: Callable

    def make(self, run_id: str, log):
        return self.make_fn(run_id, log)


def plan_network_sinks(o) -> List[SinkPlan]:
    plans = []
    if o.mqtt:
        from edgeano.stream.sinks.mqtt import MqttSink, check_paho, parse_mqtt_url

        target = parse_mqtt_url(o.mqtt)
        check_paho()
        plans.append(SinkPlan("--mqtt", lambda run_id, log: MqttSink(target, run_id, log)))
    if o.opcua:
        from edgeano.stream.sinks.opcua import OpcUaSink, check_asyncua, parse_opcua_url

        ot = parse_opcua_url(o.opcua)
        check_asyncua()
        plans.append(SinkPlan("--opcua", lambda run_id, log: OpcUaSink(ot, log)))
    if o.http:
        from edgeano.stream.sinks.http import HttpSink, parse_http_bind

        parse_http_bind(o.http)
        plans.append(SinkPlan("--http", lambda run_id, log: HttpSink(o.http, o.http_token, run_id, log)))
    return plans

"""Where scored frames go, one file per sink:

    display.py      a window per source (DisplaySink)
    video.py        --save-video, checked and renamed on close (VideoSink)
    events_file.py  --events FILE.jsonl (EventsSink)
    anomalies.py    --save-anomalies DIR (AnomalySaver)
    mqtt.py         --mqtt mqtt://HOST/TOPIC (MqttSink)
    opcua.py        --opcua opc.tcp://HOST:4840 (OpcUaSink)
    http.py         --http 127.0.0.1:8080, the live page (HttpSink)

base.py holds the interface, the loop's context and the fail-soft guard (SinkSet).
"""

from edgeano.stream.events import Scored
from edgeano.stream.sinks.anomalies import AnomalySaver
from edgeano.stream.sinks.base import LoopContext, Sink, SinkSet, check_writable
from edgeano.stream.sinks.display import DisplaySink, display_available
from edgeano.stream.sinks.events_file import EventsSink
from edgeano.stream.sinks.video import VideoSink, check_video_path, per_source_path

__all__ = ["Scored", "Sink", "SinkSet", "LoopContext", "DisplaySink", "VideoSink", "EventsSink", "AnomalySaver",
           "display_available", "check_video_path", "check_writable", "per_source_path"]

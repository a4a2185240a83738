"""The generated gRPC stubs match proto/ (regenerate with scripts/gen_proto.py)."""
import subprocess
import sys

from tests.conftest import ROOT


def test_generated_stubs_are_up_to_date() -> None:
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_proto.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_services_keep_meridio_wire_names() -> None:
    from meridio.api.pb.ambassador.v1 import tap_pb2
    from meridio.api.pb.ipam.v1 import ipam_pb2
    from meridio.api.pb.loadbalancer.v1 import stream_pb2
    from meridio.api.pb.nsp.v1 import configurationmanager_pb2, model_pb2, targetregistry_pb2

    assert configurationmanager_pb2.DESCRIPTOR.services_by_name["ConfigurationManager"].full_name == \
        "nsp.v1.ConfigurationManager"
    assert targetregistry_pb2.DESCRIPTOR.services_by_name["TargetRegistry"].full_name == "nsp.v1.TargetRegistry"
    assert ipam_pb2.DESCRIPTOR.services_by_name["Ipam"].full_name == "ipam.v1.Ipam"
    assert tap_pb2.DESCRIPTOR.services_by_name["Tap"].full_name == "ambassador.v1.Tap"
    assert stream_pb2.DESCRIPTOR.services_by_name["StreamAvailabilityService"].full_name == \
        "loadbalancer.v1.StreamAvailabilityService"
    flow = model_pb2.Flow.DESCRIPTOR.fields_by_name
    assert flow["byteMatches"].number == 10 and flow["vips"].number == 8 and flow["priority"].number == 6
    gw = model_pb2.Gateway.DESCRIPTOR.fields_by_name
    assert gw["bgpAuth"].number == 13 and gw["bfdSpec"].number == 11 and gw["holdTime"].number == 9
    target = targetregistry_pb2.Target.DESCRIPTOR
    assert [v.name for v in target.enum_types_by_name["Status"].values] == ["ENABLED", "DISABLED", "ANY"]
    assert [v.name for v in target.enum_types_by_name["Type"].values] == ["DEFAULT", "FRONTEND", "LOADBALANCER"]

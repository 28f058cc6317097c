"""RTCP feedback from the recorder's relay (worker/rtp_relay.c) to the sender. A real ffmpeg sender (VP8+Opus)
sends its video through a UDP forwarder in the test that stands in for mediasoup's PlainTransport consumer:
it drops chosen video packets and keeps them, listens on its own RTCP port, and retransmits a dropped packet
when a generic NACK (RFC 4585 6.2.1) names it. With an SDP that offers `nack` and `nack pli`, the NACKs name
exactly the dropped sequence numbers with the sender's SSRC, and the recording ends with nothing lost and
every frame that was sent; a drop that is never retransmitted is asked for a few times, then given up on
with a PLI (6.3.1). With an SDP without rtcp-fb, no NACK or PLI is sent, but receiver reports are (RFC 3550
6.4.2), and their fields are checked against what the forwarder saw."""

import struct
import subprocess
import threading
import time

from test_record import PortPairForwarder, Recording, decode_errors, free_udp_pairs, sdp_for, sender, workers  # noqa: F401 (a fixture)
from test_worker import poll


def rtcp_packets(data):
    """The packets of a compound RTCP datagram: (packet type, FMT/count field, body after the 4-byte header)."""
    out, at = [], 0
    while len(data) - at >= 4:
        first, pt, length = struct.unpack_from("!BBH", data, at)
        size = (length + 1) * 4
        assert first >> 6 == 2 and size <= len(data) - at, data.hex()
        out.append((pt, first & 0x1F, data[at + 4:at + size]))
        at += size
    assert at == len(data), data.hex()
    return out


def nacked(fci):
    """The sequence numbers a generic NACK's FCI entries (PID, BLP) name."""
    seqs = []
    for at in range(0, len(fci), 4):
        pid, blp = struct.unpack_from("!HH", fci, at)
        seqs.append(pid)
        seqs += [(pid + 1 + bit) & 0xFFFF for bit in range(16) if blp >> bit & 1]
    return seqs


class FeedbackForwarder(PortPairForwarder):
    """Between the video sender and the recorder's RTP/RTCP ports: drops the RTP datagrams whose index (0 for
    the first) is in `drop`, keeps them by sequence number, and sends one again when a NACK names it, unless its
    index is in `refuse`. The sender's RTCP is passed on; the recorder's feedback, which comes back to this
    forwarder's RTCP port, is kept with its arrival time."""

    def __init__(self, to_port, drop=(), refuse=()):
        self.drop, self.refuse = set(drop), set(refuse)
        self.index = 0
        self.kept = {}  # seq -> (index, datagram) of the dropped ones
        self.dropped, self.resent = [], []  # sequence numbers
        self.ssrc = None
        self.seqs = []  # sequence numbers forwarded, in order, retransmissions included
        self.timestamps = set()  # the RTP timestamps of the video: one per frame
        self.reports = []  # (time forwarded, NTP timestamp) of each sender report passed on
        self.feedback = []  # (time received, [(pt, fmt, body)])
        self.lock = threading.Lock()
        super().__init__(to_port)

    def on_datagram(self, sock, data, source, now):
        recorder_rtcp = ("127.0.0.1", self.to_port + 1)
        with self.lock:
            if sock is self.rtp:
                self.rtp_from_sender(data)
            elif source == recorder_rtcp:
                packets = rtcp_packets(data)
                self.feedback.append((now, packets))
                self.answer(packets)
            else:
                for pt, _, body in rtcp_packets(data):
                    if pt == 200:
                        self.reports.append((now, struct.unpack_from("!Q", body, 4)[0]))
                self.rtcp.sendto(data, recorder_rtcp)

    def rtp_from_sender(self, data):
        seq, ts, ssrc = struct.unpack_from("!HII", data, 2)
        self.ssrc = ssrc
        self.timestamps.add(ts)
        index, self.index = self.index, self.index + 1
        if index in self.drop:
            self.kept[seq] = (index, data)
            self.dropped.append(seq)
        else:
            self.seqs.append(seq)
            self.rtp.sendto(data, ("127.0.0.1", self.to_port))

    def answer(self, packets):
        for pt, fmt, body in packets:
            if pt == 205 and fmt == 1:
                for seq in nacked(body[8:]):
                    index, data = self.kept.get(seq, (None, None))
                    if data is not None and index not in self.refuse and seq not in self.resent:
                        self.resent.append(seq)
                        self.seqs.append(seq)
                        self.rtp.sendto(data, ("127.0.0.1", self.to_port))

    def of_type(self, pt, fmt=None):
        """(time, sender SSRC, body) of every feedback packet of that type."""
        with self.lock:
            return [(t, struct.unpack_from("!I", body)[0], body) for t, packets in self.feedback
                    for p, f, body in packets if p == pt and (fmt is None or f == fmt)]


def video_frames(path):
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-count_packets", "-show_entries",
                          "stream=nb_read_packets", "-of", "csv=p=0", str(path)], capture_output=True, text=True,
                         check=True).stdout
    return int(out.strip())


def record_through(rec, fwd, seconds):
    """Sends `seconds` of VP8+Opus, the video through fwd, and stops the recording once all has arrived."""
    proc = sender(fwd.port, rec.aport, seconds)
    _, err = proc.communicate(timeout=seconds + 30)
    assert proc.returncode == 0, err.decode()
    time.sleep(0.5)  # what is still in flight (not a synchronisation: the recorder reads until the stop)
    row = rec.stop()
    assert row["state"] == "succeeded" and row["status"] == "processing", row
    return {st["type"]: st for st in rec.detail()["streams"]}


# Dropped: single packets, and three in a row (one NACK entry: PID and a bitmask).
DROPS = (40, 90, 91, 92, 150)


def test_nacks_name_the_dropped_packets_and_retransmissions_fill_the_recording(stack, db, workers):
    rec = Recording(stack, db, workers)
    rec.start_worker()
    rec.wait_listening()
    fwd = FeedbackForwarder(rec.vport, drop=DROPS)
    try:
        health = record_through(rec, fwd, 8)
        assert len(fwd.dropped) == len(DROPS), fwd.dropped
        nacks = fwd.of_type(205, 1)
        assert nacks, fwd.feedback
        named = set()
        for _, sender_ssrc, body in nacks:
            media_ssrc, = struct.unpack_from("!I", body, 4)
            assert media_ssrc == fwd.ssrc and sender_ssrc != fwd.ssrc, (hex(media_ssrc), hex(fwd.ssrc))
            named.update(nacked(body[8:]))
        assert named == set(fwd.dropped), (sorted(named), fwd.dropped)
        assert sorted(fwd.resent) == sorted(fwd.dropped)
        # Every loss was repaired, so no keyframe was asked for.
        assert fwd.of_type(206, 1) == [], fwd.of_type(206, 1)
        assert health["video"]["lost"] == 0 and health["audio"]["lost"] == 0, health
        src = rec.folder / "source.mkv"
        assert video_frames(src) == len(fwd.timestamps), (video_frames(src), len(fwd.timestamps))
        assert decode_errors(src) == ""
    finally:
        fwd.close()


def test_a_loss_that_is_not_repaired_is_given_up_with_a_pli(stack, db, workers):
    rec = Recording(stack, db, workers)
    rec.start_worker()
    rec.wait_listening()
    fwd = FeedbackForwarder(rec.vport, drop=(60,), refuse=(60,))
    try:
        proc = sender(fwd.port, rec.aport, 5)
        pli = poll("a PLI", lambda: fwd.of_type(206, 1), timeout=15)
        _, err = proc.communicate(timeout=40)
        assert proc.returncode == 0, err.decode()
        rec.stop()
        t_pli, sender_ssrc, body = pli[0]
        assert struct.unpack_from("!I", body, 4)[0] == fwd.ssrc and len(body) == 8, body.hex()
        # Asked for a few times, then given up (the PLI) while libavformat still waits for it (0.5 s).
        asks = [t for t, _, body in fwd.of_type(205, 1) if fwd.dropped[0] in nacked(body[8:])]
        assert 2 <= len(asks) <= 5, asks
        assert asks[-1] - asks[0] < 0.5 and asks[-1] <= t_pli, (asks, t_pli)
        assert len(fwd.of_type(206, 1)) == 1, fwd.of_type(206, 1)  # one loss, one PLI
    finally:
        fwd.close()


def test_without_rtcp_fb_only_receiver_reports_are_sent(stack, db, workers):
    vport, aport = free_udp_pairs(2)
    sdp = "".join(line + "\r\n" for line in sdp_for(vport, aport).splitlines() if not line.startswith("a=rtcp-fb"))
    rec = Recording(stack, db, workers, source={"type": "sdp", "sdp": sdp})
    rec.vport, rec.aport = vport, aport
    rec.start_worker()
    rec.wait_listening()
    fwd = FeedbackForwarder(rec.vport, drop=(30, 31, 80))
    try:
        proc = sender(fwd.port, rec.aport, 7)
        _, err = proc.communicate(timeout=40)
        assert proc.returncode == 0, err.decode()
        with fwd.lock:
            sent_at, last_seq, wraps = time.monotonic(), fwd.seqs[-1], sum(
                1 for a, b in zip(fwd.seqs, fwd.seqs[1:]) if b < a and a - b > 30000)
        # A report made after the last packet arrived: it counts them all.
        poll("a receiver report after the stream ended", lambda: [t for t, _, _ in fwd.of_type(201) if t > sent_at + 0.1],
             timeout=5)
        rec.stop()
        assert fwd.of_type(205) == [] and fwd.of_type(206) == [], fwd.feedback
        reports = fwd.of_type(201)
        assert len(reports) >= 5, reports  # about one a second
        t_rr, own_ssrc, body = reports[-1]
        assert len(body) == 4 + 24, body.hex()  # one report block
        ssrc, lost_word, highest, jitter, lsr, dlsr = struct.unpack_from("!IIIIII", body, 4)
        assert ssrc == fwd.ssrc and own_ssrc != fwd.ssrc, (hex(ssrc), hex(fwd.ssrc))
        assert highest == wraps << 16 | last_seq, (highest, wraps, last_seq)
        assert lost_word >> 24 == 0 and lost_word & 0xFFFFFF == 3, hex(lost_word)  # none lately; three in all
        assert jitter < 90000 * 0.1, jitter  # under 100 ms, in 90 kHz units
        # LSR: the middle 32 bits of the NTP time of the latest sender report; DLSR: how long ago it arrived
        with fwd.lock:
            before = [(t, ntp) for t, ntp in fwd.reports if t < t_rr]
        t_sr, ntp = before[-1]
        assert lsr == (ntp >> 16) & 0xFFFFFFFF, (hex(lsr), hex(ntp))
        assert abs(dlsr / 65536 - (t_rr - t_sr)) < 0.3, (dlsr / 65536, t_rr - t_sr)
        # Each report goes with an SDES CNAME of the same SSRC (RFC 3550 6.1).
        sdes = [body for t, _, body in fwd.of_type(202) if t == t_rr]
        assert sdes and struct.unpack_from("!I", sdes[0])[0] == own_ssrc and sdes[0][4] == 1, sdes
    finally:
        fwd.close()

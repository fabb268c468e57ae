// The browser softphone of the agent console: the browser registers as the agent's
// phone over the WebSocket `/api/softphone` (the login's session cookie), rings with an
// audible tone when the ACD offers a call, answers with the microphone over WebRTC
// (the server is ICE-lite, DTLS-SRTP, G.711 only), holds (the caller hears the hold
// music), mutes the microphone and hangs up. A WebAudio analyser on
// the caller's audio drives the level meter (and lets tests read what the page hears).

import { useEffect, useRef, useState } from 'preact/hooks';
import { Section } from './components';

type PhoneState = 'off' | 'connecting' | 'idle' | 'ringing' | 'answering' | 'talking';

interface ServerMessage {
  type: 'registered' | 'ring' | 'answer' | 'hangup' | 'error';
  leg?: string;
  caller?: string;
  sdp?: string;
  reason?: string;
  agent?: string;
}

const STATE_TEXT: Record<PhoneState, string> = {
  off: '未启用',
  connecting: '连接中…',
  idle: '空闲，等待来电',
  ringing: '来电振铃',
  answering: '接通中…',
  talking: '通话中',
};

/** What the page hears from the caller: dominant frequency (Hz) and level (0..1). */
export interface HeardAudio {
  hz: number;
  level: number;
}

declare global {
  interface Window {
    hotlineSoftphone?: { heard: () => HeardAudio | null; state: () => PhoneState };
  }
}

/** The ring: 440 + 480 Hz, 1 s on, 2 s off, until stopped. */
function startRing(ctx: AudioContext): () => void {
  const gain = ctx.createGain();
  gain.gain.value = 0;
  gain.connect(ctx.destination);
  const oscs = [440, 480].map((f) => {
    const o = ctx.createOscillator();
    o.frequency.value = f;
    o.connect(gain);
    o.start();
    return o;
  });
  let on = true;
  gain.gain.value = 0.15;
  const timer = window.setInterval(() => {
    on = !on;
    gain.gain.value = on ? 0.15 : 0;
  }, 1500);
  return () => {
    window.clearInterval(timer);
    oscs.forEach((o) => o.stop());
    gain.disconnect();
  };
}

export function micErrorText(e: unknown): string {
  const name = e instanceof DOMException ? e.name : '';
  if (name === 'NotAllowedError' || name === 'SecurityError') {
    return '浏览器拒绝了麦克风：请在地址栏左侧的网站设置中允许本站使用麦克风，然后再次接听。';
  }
  if (name === 'NotFoundError') return '没有找到麦克风：请接上耳麦后再次接听。';
  return `无法打开麦克风：${e instanceof Error ? e.message : String(e)}`;
}

export function Softphone(props: { agentId: string }) {
  const [enabled, setEnabled] = useState(false);
  const [state, setState] = useState<PhoneState>('off');
  const [caller, setCaller] = useState('');
  const [error, setError] = useState('');
  const [level, setLevel] = useState(0);
  const [micLevel, setMicLevel] = useState(0);
  const [held, setHeld] = useState(false);
  const [muted, setMuted] = useState(false);
  const ws = useRef<WebSocket | null>(null);
  const leg = useRef<string | null>(null);
  const pc = useRef<RTCPeerConnection | null>(null);
  const mic = useRef<MediaStream | null>(null);
  const audio = useRef<AudioContext | null>(null);
  const ring = useRef<(() => void) | null>(null);
  const analyser = useRef<AnalyserNode | null>(null);
  const micAnalyser = useRef<AnalyserNode | null>(null);
  const remoteEl = useRef<HTMLAudioElement | null>(null);
  const stateRef = useRef<PhoneState>('off');
  stateRef.current = state;

  const ctx = () => {
    if (!audio.current) audio.current = new AudioContext();
    void audio.current.resume();
    return audio.current;
  };
  const stopRing = () => {
    ring.current?.();
    ring.current = null;
  };
  const endCall = () => {
    stopRing();
    pc.current?.close();
    pc.current = null;
    mic.current?.getTracks().forEach((t) => t.stop());
    mic.current = null;
    analyser.current = null;
    micAnalyser.current = null;
    leg.current = null;
    setHeld(false);
    setMuted(false);
    setCaller('');
    setLevel(0);
    setMicLevel(0);
    setState(ws.current?.readyState === WebSocket.OPEN ? 'idle' : 'off');
  };
  const send = (m: object) => ws.current?.send(JSON.stringify(m));

  useEffect(() => {
    window.hotlineSoftphone = {
      state: () => stateRef.current,
      heard: () => {
        const a = analyser.current;
        if (!a) return null;
        const bins = new Float32Array(a.frequencyBinCount);
        a.getFloatFrequencyData(bins);
        let best = 0;
        for (let i = 1; i < bins.length; i++) if (bins[i] > bins[best]) best = i;
        const time = new Float32Array(a.fftSize);
        a.getFloatTimeDomainData(time);
        const rms = Math.sqrt(time.reduce((s, x) => s + x * x, 0) / time.length);
        return { hz: (best * a.context.sampleRate) / a.fftSize, level: rms };
      },
    };
    return () => {
      delete window.hotlineSoftphone;
    };
  }, []);

  // The level meters of the caller's audio and of the microphone.
  useEffect(() => {
    if (state !== 'talking') return;
    const t = window.setInterval(() => {
      const h = window.hotlineSoftphone?.heard();
      setLevel(h ? Math.min(1, h.level * 4) : 0);
      const m = micAnalyser.current;
      if (m) {
        const time = new Float32Array(m.fftSize);
        m.getFloatTimeDomainData(time);
        const rms = Math.sqrt(time.reduce((sum, x) => sum + x * x, 0) / time.length);
        setMicLevel(Math.min(1, rms * 4));
      }
    }, 200);
    return () => window.clearInterval(t);
  }, [state]);

  useEffect(() => {
    if (!enabled) return;
    let closed = false;
    let retry = 0;
    const open = () => {
      setState('connecting');
      const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/api/softphone`;
      const sock = new WebSocket(url);
      ws.current = sock;
      sock.onmessage = (ev) => {
        let m: ServerMessage;
        try {
          m = JSON.parse(String(ev.data)) as ServerMessage;
        } catch {
          return;
        }
        if (m.type === 'registered') setState('idle');
        else if (m.type === 'ring' && m.leg) {
          leg.current = m.leg;
          setCaller(m.caller ?? '');
          setError('');
          setState('ringing');
          stopRing();
          ring.current = startRing(ctx());
        } else if (m.type === 'answer' && m.sdp && pc.current) {
          void pc.current.setRemoteDescription({ type: 'answer', sdp: m.sdp }).catch((e) => {
            setError(`接通失败：${String(e)}`);
          });
        } else if (m.type === 'hangup' && m.leg === leg.current) {
          endCall();
        } else if (m.type === 'error') {
          setError(`服务器拒绝：${m.reason ?? ''}`);
          if (m.leg && m.leg === leg.current) endCall();
        }
      };
      sock.onclose = () => {
        if (ws.current === sock) ws.current = null;
        if (leg.current) endCall();
        if (closed) return;
        setState('connecting');
        retry = window.setTimeout(open, 2000);
      };
    };
    open();
    return () => {
      closed = true;
      window.clearTimeout(retry);
      ws.current?.close();
      ws.current = null;
      endCall();
      setState('off');
    };
  }, [enabled]);

  const answer = async () => {
    const id = leg.current;
    if (!id) return;
    setError('');
    const audioCtx = ctx();
    let stream: MediaStream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    } catch (e) {
      setError(micErrorText(e));
      return;
    }
    stopRing();
    setState('answering');
    mic.current = stream;
    const micMeter = audioCtx.createAnalyser();
    micMeter.fftSize = 1024;
    audioCtx.createMediaStreamSource(stream).connect(micMeter);
    micAnalyser.current = micMeter;
    const peer = new RTCPeerConnection({ iceServers: [] });
    pc.current = peer;
    stream.getAudioTracks().forEach((t) => peer.addTrack(t, stream));
    peer.ontrack = (ev) => {
      const remote = ev.streams[0] ?? new MediaStream([ev.track]);
      if (remoteEl.current) {
        remoteEl.current.srcObject = remote;
        void remoteEl.current.play().catch(() => {});
      }
      const a = audioCtx.createAnalyser();
      a.fftSize = 4096;
      audioCtx.createMediaStreamSource(remote).connect(a);
      analyser.current = a;
    };
    peer.onconnectionstatechange = () => {
      if (peer.connectionState === 'connected') setState('talking');
      if (peer.connectionState === 'failed') setError('媒体连接失败（ICE/DTLS）');
    };
    const offer = await peer.createOffer();
    await peer.setLocalDescription(offer);
    // The server is ICE-lite and trickles nothing: send the offer with every candidate.
    await new Promise<void>((done) => {
      if (peer.iceGatheringState === 'complete') return done();
      const t = window.setTimeout(done, 3000);
      peer.onicegatheringstatechange = () => {
        if (peer.iceGatheringState === 'complete') {
          window.clearTimeout(t);
          done();
        }
      };
    });
    send({ type: 'answer', leg: id, sdp: peer.localDescription?.sdp ?? offer.sdp });
  };

  const hold = () => {
    if (!leg.current) return;
    send({ type: 'hold', leg: leg.current, on: !held });
    setHeld(!held);
  };
  const mute = () => {
    mic.current?.getAudioTracks().forEach((t) => {
      t.enabled = muted;
    });
    setMuted(!muted);
  };

  const hangup = () => {
    if (leg.current) send({ type: 'hangup', leg: leg.current });
    endCall();
  };

  return (
    <Section
      title="浏览器话机"
      extra={
        <span class="chip" data-softphone-state={state}>
          {STATE_TEXT[state]}
        </span>
      }
    >
      <div class="softphone">
        <label>
          <input
            type="checkbox"
            data-softphone="enable"
            checked={enabled}
            onChange={(e) => setEnabled((e.target as HTMLInputElement).checked)}
          />{' '}
          用本浏览器作为分机 {props.agentId} 的话机（来电时只响浏览器，不响桌面话机）
        </label>
        {state === 'ringing' || state === 'answering' || state === 'talking' ? (
          <p class="softphone-call">
            {state === 'ringing' ? '来电：' : '通话：'}
            <strong>{caller || '未知号码'}</strong>
          </p>
        ) : null}
        {state === 'talking' ? (
          <>
            <div class="meter" title="对方音量" data-softphone-level={level.toFixed(2)}>
              <div style={{ width: `${Math.round(level * 100)}%` }} />
            </div>
            <div class="meter mic" title="麦克风音量" data-softphone-mic={micLevel.toFixed(2)}>
              <div style={{ width: `${Math.round((muted ? 0 : micLevel) * 100)}%` }} />
            </div>
          </>
        ) : null}
        <div class="buttons">
          <button type="button" data-softphone="answer" disabled={state !== 'ringing'} onClick={() => void answer()}>
            接听
          </button>
          <button type="button" data-softphone="hold" data-held={held ? 'yes' : 'no'} disabled={state !== 'talking'} onClick={hold}>
            {held ? '恢复通话' : '保持'}
          </button>
          <button type="button" data-softphone="mute" data-muted={muted ? 'yes' : 'no'} disabled={state !== 'talking'} onClick={mute}>
            {muted ? '取消静音' : '静音'}
          </button>
          <button
            type="button"
            data-softphone="hangup"
            disabled={!(state === 'ringing' || state === 'answering' || state === 'talking')}
            onClick={hangup}
          >
            挂断
          </button>
        </div>
        {error ? (
          <p class="banner error" data-softphone-error>
            {error}
          </p>
        ) : null}
        <audio ref={remoteEl} autoPlay />
      </div>
    </Section>
  );
}

// The public directory (W-8, no login): search institutions and practitioners in
// Chinese, open one (licence, integrity records, location, hours), and book a slot at
// an institution; the booking code is shown once booked. Phone-first layout.
import { useEffect, useState } from 'preact/hooks';
import { ApiError, api } from '../api';

interface IntegrityRecord {
  kind: 'commendation' | 'penalty';
  date: string;
  text: string;
  authority: string;
}

export interface DirectoryEntry {
  id: number;
  kind: string;
  kind_label: string;
  name: string;
  city: string;
  city_name: string;
  county: string;
  address: string;
  lat: number | null;
  lon: number | null;
  phone: string;
  service_hours: string;
  specialties: string[];
  licence_no: string;
  licence_status: string;
  licence_status_label: string;
  institution_id: number | null;
  integrity: IntegrityRecord[];
  intro: string;
  bookable: boolean;
  distance_km: number | null;
}

interface Detail {
  entry: DirectoryEntry;
  institution: DirectoryEntry | null;
  practitioners: DirectoryEntry[];
}

interface SlotView {
  start: string;
  end: string;
  free: boolean;
}

interface Booked {
  code: string;
  institution_name: string;
  slot_start: string;
  status: string;
}

const CITIES: [string, string][] = [
  ['', '全省'], ['jinan', '济南'], ['qingdao', '青岛'], ['zibo', '淄博'], ['zaozhuang', '枣庄'],
  ['dongying', '东营'], ['yantai', '烟台'], ['weifang', '潍坊'], ['jining', '济宁'], ['taian', '泰安'],
  ['weihai', '威海'], ['rizhao', '日照'], ['linyi', '临沂'], ['dezhou', '德州'], ['liaocheng', '聊城'],
  ['binzhou', '滨州'], ['heze', '菏泽'],
];

const KINDS: [string, string][] = [
  ['', '全部类别'], ['law_firm', '律师事务所'], ['lawyer', '律师'], ['notary_office', '公证处'],
  ['notary', '公证员'], ['legal_aid_centre', '法律援助中心'], ['appraisal_institution', '司法鉴定机构'],
  ['appraiser', '司法鉴定人'], ['mediation_committee', '人民调解委员会'], ['mediator', '人民调解员'],
  ['grassroots_office', '基层法律服务所'], ['grassroots_worker', '基层法律服务工作者'],
  ['service_centre', '公共法律服务中心'],
];

const pub = <T,>(method: string, path: string, body?: unknown) => api<T>(method, path, body);

function errorText(e: unknown): string {
  if (e instanceof ApiError) {
    if (e.code === 'slot_taken') return '该时段刚刚被预约，请选择其他时段';
    if (e.field === 'phone') return '请填写11位手机号码';
    if (e.field === 'name') return '请填写姓名';
    return e.message;
  }
  return String(e);
}

/** `2026-12-09T09:00:00+08:00` → `12月9日 09:00`. */
function slotText(iso: string): string {
  const m = /^\d{4}-(\d{2})-(\d{2})T(\d{2}:\d{2})/.exec(iso);
  return m ? `${Number(m[1])}月${Number(m[2])}日 ${m[3]}` : iso;
}

/** `2026-12-09` → `12月9日 周三`. */
function dayText(day: string): string {
  const [y, m, d] = day.split('-').map(Number);
  const week = '日一二三四五六'[new Date(Date.UTC(y, m - 1, d)).getUTCDay()];
  return `${m}月${d}日 周${week}`;
}

function dayOf(iso: string): string {
  return iso.slice(0, 10);
}

function Search({ open }: { open: (id: number) => void }) {
  const [q, setQ] = useState('');
  const [city, setCity] = useState('');
  const [kind, setKind] = useState('');
  const [near, setNear] = useState<[number, number] | null>(null);
  const [items, setItems] = useState<DirectoryEntry[] | null>(null);
  const [error, setError] = useState('');
  const run = async (e?: Event) => {
    e?.preventDefault();
    const params = new URLSearchParams();
    if (q.trim()) params.set('q', q.trim());
    if (city) params.set('city', city);
    if (kind) params.set('kind', kind);
    if (near) {
      params.set('lat', String(near[0]));
      params.set('lon', String(near[1]));
    }
    try {
      setError('');
      const answer = await pub<{ items: DirectoryEntry[] }>('GET', `/api/public/directory?${params}`);
      setItems(answer.items);
    } catch (err) {
      setError(errorText(err));
    }
  };
  const locate = () => {
    navigator.geolocation?.getCurrentPosition(
      (p) => setNear([p.coords.latitude, p.coords.longitude]),
      () => setError('无法获取位置，请检查定位权限'),
    );
  };
  return (
    <div class="dir-search">
      <form class="card dir-form" onSubmit={run} data-form="directory-search">
        <input
          type="search"
          name="q"
          placeholder="机构或人员名称、地区、专长，如：公证处"
          value={q}
          onInput={(e) => setQ((e.target as HTMLInputElement).value)}
        />
        <div class="dir-row">
          <select name="city" value={city} onChange={(e) => setCity((e.target as HTMLSelectElement).value)}>
            {CITIES.map(([id, name]) => (
              <option key={id} value={id}>{name}</option>
            ))}
          </select>
          <select name="kind" value={kind} onChange={(e) => setKind((e.target as HTMLSelectElement).value)}>
            {KINDS.map(([id, name]) => (
              <option key={id} value={id}>{name}</option>
            ))}
          </select>
        </div>
        <div class="dir-row">
          <button type="button" class={near ? 'active' : ''} onClick={near ? () => setNear(null) : locate}>
            {near ? '取消附近' : '附近'}
          </button>
          <button type="submit" class="primary" data-action="search">搜索</button>
        </div>
      </form>
      {error && <p class="banner error">{error}</p>}
      {items && items.length === 0 && <p class="muted">没有找到符合条件的机构或人员</p>}
      <ul class="dir-list">
        {(items ?? []).map((e) => (
          <li key={e.id} class="card dir-item" data-entry={e.id} onClick={() => open(e.id)}>
            <div class="dir-name">{e.name}</div>
            <div class="small muted">
              {e.kind_label} · {e.city_name}{e.county}
              {e.distance_km !== null ? ` · ${e.distance_km} 公里` : ''}
            </div>
            {e.specialties.length > 0 && <div class="small">专长：{e.specialties.join('、')}</div>}
          </li>
        ))}
      </ul>
    </div>
  );
}

function Booking({ entry }: { entry: DirectoryEntry }) {
  const [slots, setSlots] = useState<SlotView[] | null>(null);
  const [chosen, setChosen] = useState<string | null>(null);
  const [name, setName] = useState('');
  const [phone, setPhone] = useState('');
  const [matter, setMatter] = useState('');
  const [booked, setBooked] = useState<Booked | null>(null);
  const [error, setError] = useState('');
  const load = () =>
    pub<{ slots: SlotView[] }>('GET', `/api/public/directory/${entry.id}/slots?days=7`)
      .then((a) => setSlots(a.slots))
      .catch((e) => setError(errorText(e)));
  useEffect(() => {
    load();
  }, [entry.id]);
  if (booked)
    return (
      <div class="card banner ok" data-booked={booked.code}>
        <div>预约成功：{booked.institution_name}</div>
        <div>时间：{slotText(booked.slot_start)}</div>
        <div>
          预约码：<strong class="mono" data-code>{booked.code}</strong>
        </div>
        <div class="small">请凭预约码和手机号按时前往；如需取消，请使用预约码和手机号。</div>
      </div>
    );
  const submit = async (e: Event) => {
    e.preventDefault();
    if (!chosen) return;
    try {
      setError('');
      const answer = await pub<Booked>('POST', `/api/public/directory/${entry.id}/appointments`, {
        slot_start: chosen,
        name,
        phone,
        matter,
      });
      setBooked(answer);
    } catch (err) {
      setError(errorText(err));
      if (err instanceof ApiError && err.code === 'slot_taken') {
        setChosen(null);
        load();
      }
    }
  };
  const days = Array.from(new Set((slots ?? []).map((s) => dayOf(s.start))));
  return (
    <form class="card" onSubmit={submit} data-form="booking">
      <h2>在线预约</h2>
      {slots && slots.length === 0 && <p class="muted">近7日没有可预约的时段</p>}
      {days.map((d) => (
        <div key={d} class="dir-day">
          <div class="small muted">{dayText(d)}</div>
          <div class="buttons">
            {(slots ?? [])
              .filter((s) => dayOf(s.start) === d)
              .map((s) => (
                <button
                  type="button"
                  key={s.start}
                  disabled={!s.free}
                  class={chosen === s.start ? 'active' : ''}
                  data-slot={s.start}
                  onClick={() => setChosen(s.start)}
                >
                  {s.start.slice(11, 16)}
                </button>
              ))}
          </div>
        </div>
      ))}
      {chosen && (
        <div class="dir-fields">
          <div class="small">已选：{slotText(chosen)}</div>
          <input name="name" placeholder="姓名" value={name} onInput={(e) => setName((e.target as HTMLInputElement).value)} />
          <input
            name="phone"
            inputMode="numeric"
            placeholder="手机号码"
            value={phone}
            onInput={(e) => setPhone((e.target as HTMLInputElement).value)}
          />
          <textarea
            name="matter"
            placeholder="事项（选填）"
            value={matter}
            onInput={(e) => setMatter((e.target as HTMLTextAreaElement).value)}
          />
          <button type="submit" class="primary" data-action="book">确认预约</button>
        </div>
      )}
      {error && <p class="banner error">{error}</p>}
    </form>
  );
}

function Show({ id, open }: { id: number; open: (id: number) => void }) {
  const [detail, setDetail] = useState<Detail | null>(null);
  const [error, setError] = useState('');
  useEffect(() => {
    setDetail(null);
    pub<Detail>('GET', `/api/public/directory/${id}`).then(setDetail).catch((e) => setError(errorText(e)));
  }, [id]);
  if (error) return <p class="banner error">{error}</p>;
  if (!detail) return <p class="muted">加载中…</p>;
  const e = detail.entry;
  return (
    <div class="dir-detail">
      <div class="card">
        <h1 class="dir-title" data-entry-name>{e.name}</h1>
        <div class="small muted">{e.kind_label}</div>
        <dl class="dir-facts">
          <dt>执业状态</dt>
          <dd data-licence>{e.licence_status_label}</dd>
          {e.licence_no && (<><dt>执业证号</dt><dd class="mono">{e.licence_no}</dd></>)}
          <dt>地址</dt>
          <dd>{e.address || `${e.city_name}${e.county}`}</dd>
          {e.phone && (<><dt>电话</dt><dd>{e.phone}</dd></>)}
          {e.service_hours && (<><dt>服务时间</dt><dd>工作日 {e.service_hours.replace(/,/g, '，')}</dd></>)}
          {e.specialties.length > 0 && (<><dt>专长</dt><dd>{e.specialties.join('、')}</dd></>)}
          {e.lat !== null && e.lon !== null && (<><dt>位置</dt><dd class="small">北纬 {e.lat.toFixed(4)}，东经 {e.lon.toFixed(4)}</dd></>)}
        </dl>
        {detail.institution && (
          <p>
            所属机构：
            <button type="button" class="link" onClick={() => open(detail.institution!.id)}>{detail.institution.name}</button>
          </p>
        )}
      </div>
      <div class="card">
        <h2>诚信信息</h2>
        {e.integrity.length === 0 ? (
          <p class="muted">暂无表彰或处罚记录</p>
        ) : (
          <ul class="dir-integrity">
            {e.integrity.map((r, i) => (
              <li key={i} class={r.kind === 'penalty' ? 'urgent' : ''}>
                {r.date} {r.kind === 'penalty' ? '处罚' : '表彰'}：{r.text}
                {r.authority ? `（${r.authority}）` : ''}
              </li>
            ))}
          </ul>
        )}
      </div>
      {e.bookable && <Booking entry={e} />}
      {detail.practitioners.length > 0 && (
        <div class="card">
          <h2>执业人员</h2>
          <ul class="dir-list">
            {detail.practitioners.map((p) => (
              <li key={p.id} class="dir-item" onClick={() => open(p.id)}>
                {p.name} <span class="small muted">{p.kind_label} · {p.licence_status_label}</span>
              </li>
            ))}
          </ul>
        </div>
      )}
    </div>
  );
}

/** `/directory` (search) and `/directory/<id>` (one entry). */
export function DirectoryPage() {
  const idOf = (p: string) => {
    const m = /^\/directory\/(\d+)/.exec(p);
    return m ? Number(m[1]) : null;
  };
  const [id, setId] = useState<number | null>(idOf(location.pathname));
  useEffect(() => {
    const onPop = () => setId(idOf(location.pathname));
    addEventListener('popstate', onPop);
    return () => removeEventListener('popstate', onPop);
  }, []);
  const open = (next: number) => {
    history.pushState(null, '', `/directory/${next}`);
    setId(next);
    scrollTo(0, 0);
  };
  return (
    <div class="app dir">
      <nav class="top">
        <a
          class="brand"
          href="/directory"
          onClick={(e) => {
            e.preventDefault();
            history.pushState(null, '', '/directory');
            setId(null);
          }}
        >
          12348 法律服务名录
        </a>
      </nav>
      <main>
        <div style={{ display: id === null ? 'block' : 'none' }}>
          <Search open={open} />
        </div>
        {id !== null && <Show key={id} id={id} open={open} />}
      </main>
    </div>
  );
}

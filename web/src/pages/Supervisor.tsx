// Supervisor dashboard: queue wallboard, order KPIs, rankings with a chart, CSV export,
// special-flag list and the ledger of one order as a timeline.

import { useEffect, useRef, useState } from 'preact/hooks';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import {
  get,
  isMissing,
  type Me,
  type Order,
  type OrderStats,
  type QueueState,
  type RankingRow,
  type Rankings,
} from '../api';
import { ErrorBanner, OrderDetail, OrderTable, RecordingPlayer, Section, unitName, useUnits } from '../components';
import {
  AGENT_STATE_LABELS,
  AREA_LABELS,
  CATEGORY_LABELS,
  STATE_LABELS,
  formatDateTime,
  formatRate,
  weightsText,
  formatSeconds,
  label,
  periodOf,
} from '../format';
import { serverNow } from '../clock';

function Wallboard() {
  const units = useUnits();
  const [queues, setQueues] = useState<QueueState[] | null>(null);
  const [missing, setMissing] = useState(false);
  const [error, setError] = useState<unknown>(null);
  useEffect(() => {
    let stop = false;
    const load = () =>
      get<QueueState[]>('/api/queues')
        .then((q) => !stop && (setQueues(q), setError(null)))
        .catch((e) => {
          if (stop) return;
          if (isMissing(e)) setMissing(true);
          else setError(e);
        });
    load();
    const t = setInterval(() => !missing && load(), 5000);
    return () => {
      stop = true;
      clearInterval(t);
    };
  }, [missing]);
  return (
    <Section title="实时排队看板">
      {missing ? (
        <p class="muted" data-wallboard="unavailable">
          呼叫中心排队数据暂不可用（/api/queues 未启用）。
        </p>
      ) : (
        <>
          <ErrorBanner error={error} />
          {queues && queues.length === 0 && <p class="empty">暂无排队数据</p>}
          <div class="wallboard">
            {(queues ?? []).map((q) => {
              const byState: Record<string, number> = {};
              for (const a of q.agents) byState[a.state] = (byState[a.state] ?? 0) + 1;
              return (
                <div class="queue" key={q.city}>
                  <h4>{unitName(units, q.city)}</h4>
                  <div class="big">{q.waiting}</div>
                  <div class="muted">排队中 · 最长等待 {formatSeconds(q.longest_wait_secs)}</div>
                  <div>
                    {Object.entries(byState).map(([s, n]) => (
                      <span class="chip" key={s}>
                        {label(AGENT_STATE_LABELS, s)} {n}
                      </span>
                    ))}
                  </div>
                  <div class="muted">
                    今日接听 {q.answered_today} · 放弃 {q.abandoned_today}
                  </div>
                </div>
              );
            })}
          </div>
        </>
      )}
    </Section>
  );
}

function Kpis() {
  const now = serverNow();
  const [kind, setKind] = useState<'all' | 'month' | 'quarter' | 'year'>('all');
  const [stats, setStats] = useState<OrderStats | null>(null);
  const [error, setError] = useState<unknown>(null);
  const period = kind === 'all' ? '' : periodOf(now, kind);
  useEffect(() => {
    let cancelled = false;
    setError(null);
    get<OrderStats>(`/api/stats/orders${period ? `?period=${encodeURIComponent(period)}` : ''}`)
      .then((s) => !cancelled && setStats(s))
      .catch((e) => {
        if (cancelled) return;
        setStats(null);
        setError(e);
      });
    return () => {
      cancelled = true;
    };
  }, [period]);
  const by = (state: string) => stats?.by_state[state] ?? 0;
  const sat = stats?.satisfaction;
  const cards: [string, string, string | number, string][] = stats
    ? [
        ['total', '工单总数', stats.total, ''],
        ['pending_dispatch', '待派单', by('pending_dispatch'), ''],
        ['in_progress', '办理中', stats.open - by('draft') - by('pending_dispatch'), ''],
        ['closed', '已办结', by('closed'), 'ok'],
        ['due_today', '今日到期', stats.due_today, 'yellow'],
        ['overdue_open', '超时未办结', stats.overdue_open, 'red'],
        ['special_flag', '特殊标记', stats.special_flag, ''],
        ['satisfaction', '满意率', sat && sat.rated > 0 ? formatRate(sat.rate) : '—', 'ok'],
      ]
    : [];
  return (
    <Section
      title="工单指标"
      extra={
        <label class="inline">
          统计范围
          <select name="kpi_period" value={kind} onChange={(e) => setKind(e.currentTarget.value as typeof kind)}>
            <option value="all">全部工单</option>
            <option value="month">本月受理</option>
            <option value="quarter">本季度受理</option>
            <option value="year">本年度受理</option>
          </select>
        </label>
      }
    >
      <ErrorBanner error={error} />
      <div class="kpis" data-kpis={stats ? 'server' : 'loading'}>
        {cards.map(([key, name, n, cls]) => (
          <div class={`kpi ${cls}`} key={key} data-kpi={key}>
            <div class="big">{n}</div>
            <div class="muted">{name}</div>
          </div>
        ))}
      </div>
      {stats && (
        <div class="muted small">
          {Object.keys(STATE_LABELS)
            .filter((s) => by(s) > 0)
            .map((s) => `${label(STATE_LABELS, s)} ${by(s)}`)
            .join(' · ')}
          {sat && sat.rated > 0
            ? ` ｜ 回访 ${sat.rated} 件：满意 ${sat.satisfied} · 基本满意 ${sat.basically_satisfied} · 不满意 ${sat.dissatisfied}`
            : ''}
          {` ｜ 统计时间 ${formatDateTime(stats.as_of)}（服务器按本单位及下级单位统计全部工单）`}
        </div>
      )}
    </Section>
  );
}

interface CallRow {
  record: {
    call_id: string;
    caller: string;
    arrival: string;
    city?: string | null;
    category?: string | null;
    agent?: string | null;
    path?: string[];
    survey?: string | null;
    hung_up_first?: string | null;
    recordings?: string[];
  };
  /** Who works as `record.agent` (`[[users]] agent`), by name. */
  agent_name?: string | null;
}

const PATH_LABELS: Record<string, string> = {
  ivr: '语音导航',
  after_hours: '非工作时间',
  queue: '排队',
  duty_list: '值班',
  voice_message: '留言',
  abandoned: '放弃',
};

/** Recent calls with their recordings (supervisors hear any call of their cities). */
function Recordings() {
  const units = useUnits();
  const [calls, setCalls] = useState<CallRow[] | null>(null);
  const [playing, setPlaying] = useState<string | null>(null);
  const [error, setError] = useState<unknown>(null);
  useEffect(() => {
    get<CallRow[]>('/api/calls?limit=20')
      .then(setCalls)
      .catch(setError);
  }, []);
  return (
    <Section title="通话记录与录音">
      <ErrorBanner error={error} />
      {calls && calls.length === 0 && <p class="empty">暂无通话记录</p>}
      {calls && calls.length > 0 && (
        <table class="orders calls">
          <thead>
            <tr>
              <th>来电时间</th>
              <th>来电号码</th>
              <th>城市</th>
              <th>类别</th>
              <th>坐席</th>
              <th>经过</th>
              <th>录音</th>
            </tr>
          </thead>
          <tbody>
            {calls.map(({ record: r, agent_name: agentName }) => (
              <tr key={r.call_id} data-call-id={r.call_id}>
                <td>{formatDateTime(r.arrival)}</td>
                <td class="mono">{r.caller}</td>
                <td>{r.city ? unitName(units, r.city) : '—'}</td>
                <td>{label(CATEGORY_LABELS, r.category ?? '')}</td>
                <td title={r.agent ?? ''} data-agent-name={agentName ?? ''}>
                  {agentName ?? (r.agent ? `坐席 ${r.agent}` : '—')}
                </td>
                <td>{(r.path ?? []).map((p) => label(PATH_LABELS, p)).join(' → ')}</td>
                <td>
                  {(r.recordings ?? []).length === 0 ? (
                    '—'
                  ) : playing === r.call_id ? (
                    <RecordingPlayer callId={r.call_id} />
                  ) : (
                    <button type="button" data-play={r.call_id} onClick={() => setPlaying(r.call_id)}>
                      ▶ 播放
                    </button>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </Section>
  );
}

const METRICS: Record<string, { label: string; pick: (r: RankingRow) => number | null | undefined; rate: boolean }> = {
  orders: { label: '办件量', pick: (r) => r.orders, rate: false },
  completion_rate: { label: '办结率', pick: (r) => r.completion_rate, rate: true },
  on_time_rate: { label: '按时办结率', pick: (r) => r.on_time_rate, rate: true },
  satisfaction_rate: { label: '满意率', pick: (r) => r.satisfaction_rate, rate: true },
  sign_in_rate: { label: '签到率', pick: (r) => r.sign_in_rate, rate: true },
  transfer_rate: { label: '转办及时率', pick: (r) => r.transfer_rate, rate: true },
  combined: { label: '综合得分', pick: (r) => r.combined_score, rate: true },
};

/** Unit levels, each ranked on its own (W-19). */
const LEVEL_LABELS: Record<string, string> = {
  province: '省级',
  city: '市级',
  county: '县级',
  township: '乡镇',
  institution: '服务机构',
};

function rowName(r: RankingRow, by: string): string {
  if (by === 'category') return label(CATEGORY_LABELS, r.category ?? r.unit);
  return r.unit_name || r.unit || '—';
}

function RankingChart(props: { rows: RankingRow[]; metric: string; by: string }) {
  const ref = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const el = ref.current;
    const m = METRICS[props.metric];
    if (!el || !m || props.rows.length === 0) return;
    const names = props.rows.map((r) => rowName(r, props.by));
    const xs = props.rows.map((_, i) => i);
    const ys = props.rows.map((r) => {
      const v = m.pick(r);
      return v === null || v === undefined ? null : m.rate ? v * 100 : v;
    });
    const bars = uPlot.paths.bars ? uPlot.paths.bars({ size: [0.6, 80] }) : undefined;
    const plot = new uPlot(
      {
        width: Math.max(320, el.clientWidth || 640),
        height: 240,
        legend: { show: false },
        cursor: { show: false },
        scales: { x: { time: false, range: [-0.5, names.length - 0.5] }, y: { range: m.rate ? [0, 100] : (_u, _min, max) => [0, max > 0 ? Math.ceil(max * 1.15) : 1] } },
        axes: [
          {
            splits: () => xs,
            values: (_u, splits) => splits.map((i) => names[i] ?? ''),
            gap: 4,
          },
          {
            values: (_u, splits) => splits.map((v) => (m.rate ? `${v}%` : String(v))),
            size: 50,
            // Counts are whole numbers: no 0.5 ticks.
            incrs: m.rate ? undefined : [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000],
          },
        ],
        series: [{}, { label: m.label, stroke: '#1f6feb', fill: 'rgba(31,111,235,0.55)', paths: bars, points: { show: false } }],
      },
      [xs, ys],
      el,
    );
    return () => plot.destroy();
  }, [props.rows, props.metric, props.by]);
  return <div class="chart" ref={ref} data-chart="ranking" />;
}

function RankingsPanel() {
  const now = serverNow();
  const [periodKind, setPeriodKind] = useState<'month' | 'quarter' | 'year'>('month');
  const [period, setPeriod] = useState(periodOf(now, 'month'));
  const [by, setBy] = useState('unit');
  const [group, setGroup] = useState('consultation');
  const [metric, setMetric] = useState('orders');
  const [level, setLevel] = useState('all');
  const [area, setArea] = useState('all');
  const [data, setData] = useState<Rankings | null>(null);
  const [error, setError] = useState<unknown>(null);
  // The chart's figure is also what the server ranks by (the count is not a rank).
  const rankBy = metric === 'orders' ? 'completion_rate' : metric;
  const query = new URLSearchParams({ period, by, group, level, metric: rankBy, business_area: area }).toString();
  useEffect(() => {
    setError(null);
    get<Rankings>(`/api/rankings?${query}`)
      .then(setData)
      .catch((e) => {
        setData(null);
        setError(e);
      });
  }, [query]);
  return (
    <Section
      title="考核排名"
      extra={
        <a class="button" href={`/api/rankings?${query}&format=csv`} download data-export="rankings-csv">
          导出 CSV
        </a>
      }
    >
      <div class="filters">
        <label>
          周期
          <select
            name="period_kind"
            value={periodKind}
            onChange={(e) => {
              const k = e.currentTarget.value as 'month' | 'quarter' | 'year';
              setPeriodKind(k);
              setPeriod(periodOf(now, k));
            }}
          >
            <option value="month">月度</option>
            <option value="quarter">季度</option>
            <option value="year">年度</option>
          </select>
        </label>
        <label>
          期间
          <input name="period" value={period} size={8} onChange={(e) => setPeriod(e.currentTarget.value)} />
        </label>
        <label>
          维度
          <select name="by" value={by} onChange={(e) => setBy(e.currentTarget.value)}>
            <option value="unit">按单位</option>
            <option value="category">按类别</option>
            <option value="area">按业务类型</option>
          </select>
        </label>
        <label>
          考核类别
          <select name="group" value={group} onChange={(e) => setGroup(e.currentTarget.value)}>
            <option value="consultation">咨询</option>
            <option value="complaint_suggestion">投诉建议</option>
            <option value="case">案件</option>
          </select>
        </label>
        <label>
          业务类型
          <select name="business_area" value={area} onChange={(e) => setArea(e.currentTarget.value)}>
            <option value="all">全部</option>
            {Object.entries(AREA_LABELS).map(([k, v]) => (
              <option key={k} value={k}>
                {v}
              </option>
            ))}
          </select>
        </label>
        <label>
          层级
          <select name="level" value={level} onChange={(e) => setLevel(e.currentTarget.value)}>
            <option value="all">全部（分层排名）</option>
            {Object.entries(LEVEL_LABELS).map(([k, v]) => (
              <option key={k} value={k}>
                {v}
              </option>
            ))}
          </select>
        </label>
        <label>
          图表指标
          <select name="metric" value={metric} onChange={(e) => setMetric(e.currentTarget.value)}>
            {Object.entries(METRICS).map(([k, v]) => (
              <option key={k} value={k}>
                {v.label}
              </option>
            ))}
          </select>
        </label>
      </div>
      <ErrorBanner error={error} />
      {data && (
        <p class="muted small" data-ranking-weights>
          自动排名，不需人工干预。综合得分权重：{weightsText(data.weights)}
        </p>
      )}
      {data && data.rows.length === 0 && <p class="empty">该期间暂无考核数据</p>}
      {data && data.rows.length > 0 && (
        <>
          <RankingChart rows={data.rows} metric={metric} by={data.by ?? by} />
          <table class="orders rankings">
            <thead>
              <tr>
                <th>层级</th>
                <th>名次</th>
                <th>{by === 'category' ? '类别' : by === 'area' ? '业务类型' : '单位'}</th>
                <th>办件量</th>
                <th>办结率</th>
                <th>按时办结率</th>
                <th>满意率</th>
                <th>退回</th>
                <th>超时</th>
                <th>签到率</th>
                <th>转办及时率</th>
                <th>综合得分</th>
              </tr>
            </thead>
            <tbody>
              {data.rows.map((r) => (
                <tr key={`${r.level ?? ''}-${r.rank}-${rowName(r, by)}`} data-ranking-unit={r.unit ?? r.category}>
                  <td>{r.level ? (LEVEL_LABELS[r.level] ?? r.level) : '—'}</td>
                  <td>{r.rank}</td>
                  <td>{rowName(r, by)}</td>
                  <td>{r.orders}</td>
                  <td>{formatRate(r.completion_rate)}</td>
                  <td>{formatRate(r.on_time_rate)}</td>
                  <td>{formatRate(r.satisfaction_rate)}</td>
                  <td>{r.returns ?? '—'}</td>
                  <td>{r.overdue ?? '—'}</td>
                  <td>{formatRate(r.sign_in_rate)}</td>
                  <td>{formatRate(r.transfer_rate)}</td>
                  <td>{formatRate(r.combined_score)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </>
      )}
    </Section>
  );
}

function SpecialFlags(props: { onOpen: (id: string) => void }) {
  const units = useUnits();
  const [orders, setOrders] = useState<Order[] | null>(null);
  const [error, setError] = useState<unknown>(null);
  useEffect(() => {
    get<Order[] | { items: Order[] }>('/api/special_flags')
      .then((r) => setOrders(Array.isArray(r) ? r : r.items))
      .catch(setError);
  }, []);
  return (
    <Section title="特殊标记工单">
      <ErrorBanner error={error} />
      {orders && <OrderTable orders={orders} units={units} onSelect={(o) => props.onOpen(o.id)} />}
    </Section>
  );
}

function LedgerExport(props: { me: Me }) {
  const units = useUnits();
  const [unit, setUnit] = useState('');
  const chosen = unit || (units.some((u) => u.id === props.me.unit) ? props.me.unit : units[0]?.id) || '';
  return (
    <div class="filters">
      <label>
        台账导出单位
        <select name="ledger_unit" value={chosen} onChange={(e) => setUnit(e.currentTarget.value)}>
          {units.map((u) => (
            <option key={u.id} value={u.id}>
              {u.name}
            </option>
          ))}
        </select>
      </label>
      {chosen && (
        <a class="button" href={`/api/ledger/${encodeURIComponent(chosen)}.csv`} download data-export="ledger-csv">
          导出台账 CSV
        </a>
      )}
    </div>
  );
}

function LedgerOrder(props: { id: string; me: Me }) {
  const units = useUnits();
  const [order, setOrder] = useState<Order | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [tick, setTick] = useState(0);
  useEffect(() => {
    setError(null);
    get<Order>(`/api/orders/${encodeURIComponent(props.id)}`)
      .then(setOrder)
      .catch((e) => {
        setOrder(null);
        setError(e);
      });
  }, [props.id, tick]);
  if (error) return <ErrorBanner error={error} />;
  if (!order) return null;
  return <OrderDetail order={order} me={props.me} units={units} onChanged={() => setTick((n) => n + 1)} timelineOpen />;
}

export function SupervisorDashboard(props: { me: Me }) {
  const [lookup, setLookup] = useState('');
  const [ledgerId, setLedgerId] = useState<string | null>(null);
  return (
    <div class="console">
      <Wallboard />
      <Kpis />
      <RankingsPanel />
      <Recordings />
      <SpecialFlags onOpen={(id) => (setLookup(id), setLedgerId(id))} />
      <Section title="工单台账（时间线）">
        <form
          class="filters"
          onSubmit={(e) => {
            e.preventDefault();
            setLedgerId(lookup.trim() || null);
          }}
        >
          <label>
            工单号
            <input name="ledger_order" value={lookup} onInput={(e) => setLookup(e.currentTarget.value)} />
          </label>
          <button type="submit">查看</button>
        </form>
        <LedgerExport me={props.me} />
        {ledgerId && <LedgerOrder key={ledgerId} id={ledgerId} me={props.me} />}
      </Section>
    </div>
  );
}

import { describe, expect, it } from 'vitest';
import {
  byDeadline,
  contactOf,
  currentDue,
  deadlineMark,
  formatDateTime,
  formatRate,
  formatRemaining,
  formatSeconds,
  formatWait,
  lastReturnReason,
  closeReasonText,
  periodOf,
  unitIds,
  agentStateName,
  agentStateExplanation,
  localDeadline,
  weightsText,
  STATE_LABELS,
  EVENT_LABELS,
  COMMAND_LABELS,
  CLOSE_REASON_LABELS,
  CATEGORY_LABELS,
  categoryOptions,
  deadlineText,
  formatDue,
  label,
  limitSpan,
  remainingText,
  timelineEntry,
  DEADLINE_RULE,
} from './format';

const deadlines = {
  transfer_due: '2026-11-27T16:00:00+08:00',
  feedback_due: '2026-12-04T24:00:00+08:00'.replace('24:00:00', '23:59:59'),
  callback_due: null,
};

describe('currentDue', () => {
  it('runs against the transfer limit before dispatch and feedback after', () => {
    expect(currentDue({ state: 'pending_dispatch', deadlines })).toBe(deadlines.transfer_due);
    expect(currentDue({ state: 'signed', deadlines })).toBe(deadlines.feedback_due);
    expect(currentDue({ state: 'closed', deadlines })).toBeNull();
    expect(currentDue({ state: 'special_study', deadlines })).toBeNull();
  });
});

describe('deadlineMark', () => {
  const order = { state: 'pending_dispatch', deadlines } as const;
  it('is none well before the limit', () => {
    expect(deadlineMark(order, new Date('2026-11-25T08:00:00+08:00'))).toBe('none');
  });
  it('is yellow within a day of the limit', () => {
    expect(deadlineMark(order, new Date('2026-11-27T08:00:00+08:00'))).toBe('yellow');
  });
  it('is red at and after the limit', () => {
    expect(deadlineMark(order, new Date('2026-11-27T16:00:00+08:00'))).toBe('red');
  });
  it("trusts the server's reminder and overdue flags over the clock", () => {
    const early = new Date('2026-11-01T00:00:00+08:00');
    expect(deadlineMark({ ...order, reminder: 'yellow' }, early)).toBe('yellow');
    expect(deadlineMark({ ...order, overdue: true }, early)).toBe('red');
  });
  it('never marks a closed order', () => {
    expect(deadlineMark({ ...order, state: 'closed', overdue: true }, new Date())).toBe('none');
  });
});

describe('byDeadline', () => {
  it('sorts earliest limit first and orders without a limit last', () => {
    const a = { id: 'a', state: 'signed', deadlines };
    const b = { id: 'b', state: 'pending_dispatch', deadlines };
    const c = { id: 'c', state: 'closed', deadlines };
    expect(byDeadline([c, a, b]).map((o) => o.id)).toEqual(['b', 'a', 'c']);
  });
});

describe('formatting', () => {
  it('shows Beijing time whatever the input offset', () => {
    expect(formatDateTime('2026-11-28T06:05:00Z')).toBe('2026-11-28 14:05');
    expect(formatDateTime(null)).toBe('—');
  });
  it('says time left or overdue in Chinese', () => {
    const now = new Date('2026-11-28T00:00:00Z');
    expect(formatRemaining('2026-11-30T03:00:00Z', now)).toBe('剩余 2天3小时');
    expect(formatRemaining('2026-11-27T19:00:00Z', now)).toBe('超时 5小时0分');
  });
  it('formats rates and seconds', () => {
    expect(formatRate(0.935)).toBe('93.5%');
    expect(formatRate(null)).toBe('—');
    expect(formatSeconds(125)).toBe('2:05');
  });
  it('reads contacts and units in either shape', () => {
    expect(contactOf({ contact: { name: '张三', phone: '138****5678' } }).phone).toBe('138****5678');
    expect(contactOf({ contact_name: '李四', contact_phone: '139****0000' }).name).toBe('李四');
    expect(unitIds(['jinan', { unit: 'qingdao', status: 'signed' }])).toEqual(['jinan', 'qingdao']);
  });
  it('names ranking periods in Beijing time', () => {
    const newYearsEveUtc = new Date('2026-12-31T17:00:00Z'); // 2027-01-01 01:00 in Beijing
    expect(periodOf(newYearsEveUtc, 'month')).toBe('2027-01');
    expect(periodOf(newYearsEveUtc, 'quarter')).toBe('2027-Q1');
    expect(periodOf(new Date('2026-11-28T00:00:00Z'), 'quarter')).toBe('2026-Q4');
  });
});

describe('ledger helpers', () => {
  it('finds the latest return reason, from the row or the event kind', () => {
    const events = [
      { kind: { type: 'created' } },
      { kind: { type: 'returned', unit: 'a', reason: '不属于本单位' }, reason: null },
      { kind: { type: 'dispatched', units: ['b'] } },
      { kind: { type: 'returned', unit: 'b', reason: '非本辖区' }, reason: '非本辖区' },
    ];
    expect(lastReturnReason(events)).toBe('非本辖区');
    expect(lastReturnReason(events.slice(0, 3))).toBe('不属于本单位');
    expect(lastReturnReason(events.slice(0, 1))).toBeNull();
  });
});

describe('display text', () => {
  it('names closing reasons in Chinese', () => {
    expect(closeReasonText('satisfied')).toBe('回访满意办结');
    expect(closeReasonText({ judgement: 'law_or_policy' })).toBe('依法办结');
  });
});

describe('formatWait', () => {
  it('rounds a Retry-After up to whole minutes past a minute', () => {
    expect(formatWait(898)).toBe('15 分钟');
    expect(formatWait(30)).toBe('30 秒');
    expect(formatWait(0)).toBe('稍后');
  });
});

describe('agent state helpers', () => {
  it('strips the pause reason from a state', () => {
    expect(agentStateName('paused:用餐')).toBe('paused');
    expect(agentStateName('wrap_up')).toBe('wrap_up');
    expect(agentStateName(undefined)).toBe('');
  });
  it('tells an offline agent that the softphone is the cause', () => {
    expect(agentStateExplanation('offline', 'registration_lost')).toContain('软电话未注册');
    expect(agentStateExplanation('offline', null)).toContain('软电话未注册');
    expect(agentStateExplanation('offline', 'agent_lost')).toContain('没有响应');
    expect(agentStateExplanation('available', 'restored')).toContain('自动恢复');
    expect(agentStateExplanation('available', 'sign_in')).toBeNull();
  });
});

describe('localDeadline', () => {
  it('moves the server span onto the browser clock', () => {
    expect(localDeadline('2026-02-14T10:00:30+08:00', '2026-02-14T10:00:00+08:00', 1_000)).toBe(31_000);
    expect(localDeadline(null, '2026-02-14T10:00:00+08:00', 1_000)).toBeNull();
    expect(localDeadline('x', '2026-02-14T10:00:00+08:00', 1_000)).toBeNull();
  });
});

describe('weightsText', () => {
  it('prints each weighted figure with its share, leaving out zero weights', () => {
    expect(
      weightsText({ completion_rate: 0.2, on_time_rate: 0.3, satisfaction_rate: 0.3, sign_in_rate: 0.1, transfer_rate: 0.1 }),
    ).toBe('办结率 20% · 按时办结率 30% · 满意率 30% · 签到率 10% · 转办及时率 10%');
    expect(weightsText({ completion_rate: 0, transfer_rate: 2 })).toBe('转办及时率 100%');
    expect(weightsText({ completion_rate: 0 })).toBe('—');
    expect(weightsText(undefined)).toBe('—');
  });
});

describe('words a Shandong bureau uses', () => {
  it('reads 特殊标记 as a flag under study, never as closed', () => {
    expect(label(STATE_LABELS, 'special_study')).toBe('特殊标记（研究处理中）');
    expect(label(STATE_LABELS, 'special_study')).not.toMatch(/办结|关闭|已结/);
    expect(EVENT_LABELS.special_flagged).toBe('特殊标记');
    // The end decided after the study is its own closing, not the flag's.
    expect(CLOSE_REASON_LABELS.special_flag).toBe('研究处理后办结');
    expect(Object.values(CLOSE_REASON_LABELS)).not.toContain('特殊标记办结');
  });
  it('reads an urgent order fed back and waiting for its callback as 待回访', () => {
    expect(label(STATE_LABELS, 'fed_back')).toBe('待回访');
  });
  it('reads the return to the upper level as 退回上级', () => {
    expect(EVENT_LABELS.returned_upward).toBe('退回上级');
    expect(COMMAND_LABELS.return_upward).toBe('退回上级');
    expect(Object.values({ ...EVENT_LABELS, ...COMMAND_LABELS })).not.toContain('上报退回');
  });
  it('registers hotline orders as 咨询/投诉/建议 and 案件 only from other channels', () => {
    expect(Object.values(categoryOptions('phone'))).toEqual(['咨询', '投诉', '建议']);
    expect(Object.values(categoryOptions(undefined))).toEqual(['咨询', '投诉', '建议']);
    expect(categoryOptions('web')).toEqual(CATEGORY_LABELS);
    expect(categoryOptions('hotline_12345').case).toBe('案件');
  });
  it('says on the form that the day of receipt is not counted', () => {
    expect(DEADLINE_RULE).toContain('受理当日不计入');
  });
});

describe('deadlines as a bureau writes them', () => {
  const now = new Date('2026-12-07T15:00:00+08:00');
  it('writes a limit at 00:00 Beijing as 24:00 of the day before, in Beijing time', () => {
    expect(formatDue('2026-12-08T16:00:00Z', now)).toBe('12月8日 24:00');
    expect(formatDue('2026-12-09T00:00:00+08:00', now)).toBe('12月8日 24:00');
    expect(formatDue('2026-12-08T24:00+08:00', now)).toBe('12月8日 24:00');
    expect(formatDue('2026-12-07T08:00:00Z', now)).toBe('12月7日 16:00');
    expect(formatDue('2027-01-05T16:00:00Z', now)).toBe('2027年1月5日 24:00');
    expect(formatDue(null, now)).toBe('—');
  });
  it('adds the span of the limit: working days, or hours for the urgent transfer', () => {
    const normal = {
      transfer_due: '2026-12-09T00:00:00+08:00',
      transfer_working_days: 1,
      transfer_hours: null,
      feedback_due: '2026-12-15T00:00:00+08:00',
      feedback_working_days: 5,
    };
    expect(deadlineText(normal, 'transfer', now)).toBe('12月8日 24:00（1个工作日）');
    expect(deadlineText(normal, 'feedback', now)).toBe('12月14日 24:00（5个工作日）');
    expect(deadlineText(normal, 'callback', now)).toBe('—');
    const urgent = { transfer_due: '2026-12-07T16:00:00+08:00', transfer_hours: 1, transfer_working_days: null };
    expect(limitSpan(urgent, 'transfer')).toBe('1小时');
    expect(deadlineText(urgent, 'transfer', now)).toBe('12月7日 16:00（1小时）');
  });
  it('counts the time left in working days from the server calendar', () => {
    const d = (left: number) => ({ feedback_due: '2026-12-15T00:00:00+08:00', feedback_working_days_left: left });
    expect(remainingText(d(5), 'feedback', now)).toBe('剩余 5个工作日');
    expect(remainingText(d(0), 'feedback', new Date('2026-12-14T10:00:00+08:00'))).toBe('今日24:00到期');
    const after = new Date('2026-12-16T10:00:00+08:00');
    expect(remainingText(d(-2), 'feedback', after)).toBe('超时 2个工作日');
    // Past a Friday limit on the weekend: overdue, no working day begun yet.
    expect(remainingText(d(0), 'feedback', after)).toBe('已超时');
  });
  it('counts the clock for hour limits', () => {
    const urgent = { transfer_due: '2026-12-07T16:00:00+08:00', transfer_hours: 1 };
    expect(remainingText(urgent, 'transfer', new Date('2026-12-07T15:20:00+08:00'))).toBe('剩余 40分钟');
  });
});

describe('timelineEntry', () => {
  const units = (id: string) => ({ jinan: '济南市司法局', 'jinan-legal-aid': '济南市法律援助中心' })[id] ?? id;
  it("names people, never login ids, and labels enum values in Chinese", () => {
    const e = timelineEntry(
      {
        actor: 'callback',
        actor_name: '回访员 吴静',
        role: 'callback_staff',
        kind: { type: 'callback_recorded', round: 'first', satisfaction: 'basically_satisfied', note: '', by: 'callback', by_name: '回访员 吴静' },
      },
      units,
    );
    expect(e.who).toBe('回访员 吴静');
    expect(e.what).toBe('回访');
    expect(e.extra).toBe('首次回访 · 基本满意 · 回访人 回访员 吴静');
    expect(JSON.stringify(e)).not.toMatch(/basically_satisfied|"callback"/);
  });
  it('labels the post-call survey answer and missed limits', () => {
    const survey = timelineEntry(
      { actor: 'system', actor_name: '系统', role: 'system', kind: { type: 'call_survey_recorded', call_id: 'c1', answer: 'basically_satisfied' } },
      units,
    );
    expect(survey.extra).toBe('基本满意');
    expect(survey.text).toBe('');
    const missed = timelineEntry(
      { actor: 'system', actor_name: '系统', role: 'system', kind: { type: 'limit_missed', deadline: 'transfer', due: '2026-12-09T00:00:00+08:00' } },
      units,
    );
    expect(missed.what).toBe('超过时限');
    expect(missed.extra).toMatch(/^转办时限（\d{0,4}年?12月8日 24:00）$/);
  });
  it('names the units of a return upward and shows an unknown account by its role', () => {
    const e = timelineEntry(
      { actor: 'old-login', actor_name: null, role: 'dispatcher', kind: { type: 'returned_upward', to_unit: 'jinan', reason: '非本级事项' } },
      units,
    );
    expect(e.what).toBe('退回上级');
    expect(e.extra).toBe('→ 济南市司法局');
    expect(e.text).toBe('非本级事项');
    expect(e.who).toBe('转办人员（已停用账号）');
    expect(e.who).not.toContain('old-login');
  });
  it('tells the closing reason of a concluded study', () => {
    const e = timelineEntry(
      { actor: 'supervisor', actor_name: '督办员 周军', kind: { type: 'closed', reason: 'special_flag', note: '已协调解决' } },
      units,
    );
    expect(e.text).toBe('研究处理后办结：已协调解决');
  });
});

describe('logged calls in the timeline', () => {
  const units = (id: string) => ({ 'jinan-lixia': '历下区司法局' })[id] ?? id;
  it('names agents and units, not extensions or ids, and drops the bilingual note', () => {
    const e = timelineEntry(
      {
        actor: 'system',
        actor_name: '系统',
        kind: {
          type: 'call_logged',
          note: '来电由坐席1001转接至坐席1002 (transferred by agent 1001 to agent 1002)',
          call: { what: 'transferred_to_agent', call_id: 'c1', from: '1001', from_name: '值班员 张明', to: '1002', to_name: null },
        },
      },
      units,
    );
    expect(e.what).toBe('通话记录');
    expect(e.extra).toBe('来电由值班员 张明转接至坐席 1002');
    expect(e.text).toBe('');
    const unit = timelineEntry(
      { actor_name: '系统', kind: { type: 'call_logged', note: 'x', call: { what: 'transferred_to_unit', unit: 'jinan-lixia', agent: '1001', agent_name: '值班员 张明' } } },
      units,
    );
    expect(unit.extra).toBe('来电已转接至历下区司法局（值班员 张明转接）');
    const attempt = timelineEntry(
      { actor_name: '系统', kind: { type: 'call_logged', note: 'x', call: { what: 'callback_attempt', attempt: 2, agent: '1001', agent_name: '值班员 张明', result: 'no_answer' } } },
      units,
    );
    expect(attempt.extra).toBe('第2次回电（值班员 张明）：无人接听');
    const back = timelineEntry(
      {
        actor_name: '系统',
        kind: {
          type: 'call_logged',
          note: 'x',
          call: { what: 'order_callback', call_id: 'ordercall-1', by: 'wu', by_name: '回访员 吴静', phone: '1003', result: 'answered', talk_secs: 42 },
        },
      },
      units,
    );
    expect(back.extra).toBe('回访员 吴静回拨解答：已接通，通话42秒');
  });
});

// The order consoles: dispatcher inbox, unit workspace, callback workspace.

import type { Me, Order } from '../api';
import { OrderConsole } from '../components';

export function DispatchInbox({ me }: { me: Me }) {
  return <OrderConsole me={me} title="派单收件箱（按时限排序）" baseQuery={{}} initialState="pending_dispatch" />;
}

export function UnitWorkspace({ me }: { me: Me }) {
  return (
    <OrderConsole
      me={me}
      title={`承办工作台 · ${me.unit_name ?? me.unit}`}
      baseQuery={{}}
      accept={(o: Order) => o.state !== 'closed' && o.state !== 'pending_dispatch' && o.state !== 'draft'}
    />
  );
}

const CALLBACK_COMMANDS = ['record_callback', 'feed_back'];

/** Callbacks due: urgent orders fed back (mandatory, H-11) and second callbacks (W-14),
 * plus anything open this user may feed back or call back; closed orders that may still
 * be sampled are listed apart so they do not bury the due ones. */
export function CallbackWorkspace({ me }: { me: Me }) {
  const mayCall = (o: Order) => (o.allowed_commands ?? []).some((c) => CALLBACK_COMMANDS.includes(c));
  return (
    <div class="console">
      <OrderConsole
        me={me}
        title="待回访工单"
        baseQuery={{}}
        showFilters={false}
        accept={(o: Order) =>
          o.state !== 'closed' && (mayCall(o) || o.state === 'fed_back' || o.state === 'second_callback')
        }
      />
      <OrderConsole
        me={me}
        title="已办结 · 可抽样回访"
        baseQuery={{ state: 'closed' }}
        showFilters={false}
        accept={(o: Order) => (o.allowed_commands ?? []).includes('record_callback')}
      />
    </div>
  );
}

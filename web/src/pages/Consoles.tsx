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

export function CallbackWorkspace({ me }: { me: Me }) {
  return (
    <OrderConsole
      me={me}
      title="待回访工单"
      baseQuery={{}}
      showFilters={false}
      accept={(o: Order) =>
        (o.allowed_commands ?? []).some((c) => CALLBACK_COMMANDS.includes(c)) ||
        o.state === 'fed_back' ||
        o.state === 'second_callback'
      }
    />
  );
}

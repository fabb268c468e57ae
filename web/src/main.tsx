import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { ApiError, get, post, setCsrf, type Me } from './api';
import { ROLE_LABELS, label } from './format';
import { Login } from './pages/Login';
import { AgentWorkspace } from './pages/Agent';
import { CallbackWorkspace, DispatchInbox, UnitWorkspace } from './pages/Consoles';
import { SupervisorDashboard } from './pages/Supervisor';
import { PublicPage } from './pages/Public';
import { DirectoryPage } from './pages/Directory';
import './style.css';
import { syncClock } from './clock';

interface Page {
  path: string;
  title: string;
  roles: string[];
  view: (props: { me: Me }) => preact.JSX.Element;
}

const PAGES: Page[] = [
  { path: '/agent', title: '坐席工作台', roles: ['agent'], view: AgentWorkspace },
  { path: '/dispatch', title: '派单收件箱', roles: ['dispatcher'], view: DispatchInbox },
  { path: '/unit', title: '承办工作台', roles: ['unit_handler', 'unit_head', 'reviewer'], view: UnitWorkspace },
  { path: '/callback', title: '回访工作台', roles: ['callback_staff'], view: CallbackWorkspace },
  { path: '/supervisor', title: '督办看板', roles: ['supervisor', 'province_admin'], view: SupervisorDashboard },
];

function pagesFor(me: Me): Page[] {
  return PAGES.filter((p) => p.roles.some((r) => me.roles.includes(r)));
}

function usePath(): [string, (p: string) => void] {
  const [path, setPath] = useState(location.pathname);
  useEffect(() => {
    const onPop = () => setPath(location.pathname);
    addEventListener('popstate', onPop);
    return () => removeEventListener('popstate', onPop);
  }, []);
  const go = (p: string) => {
    if (p !== location.pathname) history.pushState(null, '', p);
    setPath(p);
  };
  return [path, go];
}

function App() {
  const [me, setMe] = useState<Me | null | undefined>(undefined);
  const [path, go] = usePath();
  useEffect(() => {
    get<Me>('/api/me')
      .then((m) => {
        syncClock(m.server_time);
        setMe(m);
      })
      .catch((e) => {
        if (!(e instanceof ApiError) || e.status !== 401) console.warn(e);
        setMe(null);
      });
  }, []);
  if (me === undefined) return <p class="muted center">加载中…</p>;
  if (me === null)
    return (
      <Login
        onLogin={(u) => {
          syncClock(u.server_time);
          setMe(u);
        }}
      />
    );
  const pages = pagesFor(me);
  const page = pages.find((p) => p.path === path) ?? pages[0];
  const logout = async () => {
    try {
      await post('/api/logout');
    } finally {
      setCsrf(null);
      setMe(null);
      go('/');
    }
  };
  return (
    <div class="app">
      <nav class="top">
        <span class="brand">12348 热线</span>
        {pages.map((p) => (
          <a
            key={p.path}
            href={p.path}
            class={p === page ? 'active' : ''}
            onClick={(e) => {
              e.preventDefault();
              go(p.path);
            }}
          >
            {p.title}
          </a>
        ))}
        <span class="spacer" />
        <span class="who" data-user={me.id}>
          {me.name}（{me.roles.map((r) => label(ROLE_LABELS, r)).join('、')}
          {me.unit_name ? ` · ${me.unit_name}` : ''}）
        </span>
        <button type="button" class="link" onClick={logout} data-action="logout">
          退出
        </button>
      </nav>
      <main>{page ? <page.view key={page.path} me={me} /> : <p class="muted">当前账号没有可用的控制台</p>}</main>
    </div>
  );
}

const root = document.getElementById('app');
// The public pages need no login: they never ask /api/me. /public takes a
// consultation (W-2, W-9); /directory finds institutions and books a slot (W-8).
const path = location.pathname;
const isPublic = path === '/public' || path.startsWith('/public/');
const isDirectory = path.startsWith('/directory');
if (root) render(isPublic ? <PublicPage /> : isDirectory ? <DirectoryPage /> : <App />, root);

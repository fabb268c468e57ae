import { useState } from 'preact/hooks';
import { ApiError, post, setCsrf, type Me } from '../api';
import { errorText } from '../components';
import { formatWait } from '../format';

export function Login(props: { onLogin: (me: Me) => void }) {
  const [user, setUser] = useState('');
  const [password, setPassword] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const r = await post<{ user: Me; csrf_token: string }>('/api/login', { user, password });
      setCsrf(r.csrf_token);
      props.onLogin(r.user);
    } catch (err) {
      if (err instanceof ApiError && err.status === 429) {
        const wait = err.retryAfterSecs ? `${formatWait(err.retryAfterSecs)}后` : '稍后';
        setError(`登录失败次数过多，请${wait}再试。`);
      } else if (err instanceof ApiError && err.status === 401) {
        setError('用户名或密码错误');
      } else {
        setError(errorText(err));
      }
    } finally {
      setBusy(false);
    }
  };
  return (
    <div class="login-page">
      <form class="login card" onSubmit={submit}>
        <h1>12348 公共法律服务热线</h1>
        <p class="muted">山东省 · 工单与呼叫中心控制台</p>
        <label>
          用户名
          <input name="user" autocomplete="username" value={user} onInput={(e) => setUser(e.currentTarget.value)} required />
        </label>
        <label>
          密码
          <input
            name="password"
            type="password"
            autocomplete="current-password"
            value={password}
            onInput={(e) => setPassword(e.currentTarget.value)}
            required
          />
        </label>
        {error && (
          <div class="banner error" role="alert">
            {error}
          </div>
        )}
        <button type="submit" class="primary" disabled={busy}>
          登录
        </button>
      </form>
    </div>
  );
}

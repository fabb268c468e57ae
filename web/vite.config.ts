import { defineConfig } from 'vite';
import preact from '@preact/preset-vite';

// `npm run dev` proxies the API to a local `hotline serve` (default HTTP port 8080).
export default defineConfig({
  plugins: [preact()],
  server: { proxy: { '/api': 'http://127.0.0.1:8080' } },
  build: { outDir: 'dist', assetsDir: 'assets', sourcemap: false },
});

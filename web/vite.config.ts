import { defineConfig } from 'vite';
import react from '@vitejs/plugin-react';

// `npm run dev` serves the app on :5173 and forwards the Socket.IO endpoint to a
// `switchboard serve --dev` on :3000 (override with SWITCHBOARD_URL).
const server = process.env.SWITCHBOARD_URL ?? 'http://127.0.0.1:3000';

export default defineConfig({
  plugins: [react()],
  server: {
    proxy: {
      '/socket.io': { target: server, ws: true },
      '/api': server,
      '/health': server,
    },
  },
  build: {
    outDir: 'dist',
    sourcemap: true,
    chunkSizeWarningLimit: 1024,
  },
});

import { startRelpWorker } from '@relp/web/worker';

startRelpWorker();

import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { FastifyAdapter } from '@bull-board/fastify';
import { BullBoardModule } from '@bull-board/nestjs';
import { Module } from '@nestjs/common';
import { Queues } from './queue.constants.js';

/** The BullMQ dashboard at /queues (API process only; BULL_BOARD=false turns it off). */
@Module({
  imports: [
    BullBoardModule.forRoot({ route: '/queues', adapter: FastifyAdapter }),
    ...Object.values(Queues).map((name) => BullBoardModule.forFeature({ name, adapter: BullMQAdapter })),
  ],
})
export class QueueBoardModule {}

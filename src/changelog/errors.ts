import { WeirError } from '../errors/errors';

/** A producer of this partition was fenced: another instance has taken the partition over. */
export class FencedError extends WeirError {
  constructor(
    readonly partition: number,
    cause: unknown,
  ) {
    super(`changelog: partition ${partition} was taken over by another instance (its transaction was fenced)`, { domain: 'external', retriable: false, cause });
    this.name = 'FencedError';
  }
}


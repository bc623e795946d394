import type { Deadline, Metadata, ServerInterceptingCallInterface } from '@grpc/grpc-js';

type Call = ServerInterceptingCallInterface;

/**
 * A grpc-js server call that passes its sending half through to the call below and leaves `start` (which
 * listener the call below reports to) to the subclass: one plain object per call, where grpc-js's own
 * ServerInterceptingCall builds listener and responder objects and a closure per message sent.
 */
export abstract class PassThroughServerCall implements Call {
  constructor(protected readonly next: Call) {}

  abstract start(listener: Parameters<Call['start']>[0]): void;

  sendMetadata(metadata: Metadata): void {
    this.next.sendMetadata(metadata);
  }
  sendMessage(message: unknown, callback: () => void): void {
    this.next.sendMessage(message, callback);
  }
  sendStatus(status: Parameters<Call['sendStatus']>[0]): void {
    this.next.sendStatus(status);
  }
  startRead(): void {
    this.next.startRead();
  }
  getPeer(): string {
    return this.next.getPeer();
  }
  getDeadline(): Deadline {
    return this.next.getDeadline();
  }
  getHost(): string {
    return this.next.getHost();
  }
  getAuthContext(): ReturnType<Call['getAuthContext']> {
    return this.next.getAuthContext();
  }
  getConnectionInfo(): ReturnType<Call['getConnectionInfo']> {
    return this.next.getConnectionInfo();
  }
  getMetricsRecorder(): ReturnType<Call['getMetricsRecorder']> {
    return this.next.getMetricsRecorder();
  }
}

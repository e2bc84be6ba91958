/**
 * The event IDs a subscriber has delivered, in bounded memory: the most recent `capacity` IDs
 * are remembered, the oldest forgotten first. Events come again only shortly after their first
 * delivery (a redelivery, a reconnect's overlap), so a window of recent IDs catches them while
 * a subscriber that runs for months never grows.
 */
export class RecentIds {
  /** @param {number} capacity */
  constructor(capacity) {
    if (!Number.isSafeInteger(capacity) || capacity < 1) {
      throw new RangeError('the dedupe window holds at least one event ID');
    }
    this.capacity = capacity;
    /** @type {Set<string>} insertion order: oldest first */
    this.ids = new Set();
  }

  /** @param {string} id */
  has(id) {
    return this.ids.has(id);
  }

  /** @param {string} id */
  add(id) {
    if (this.ids.has(id)) {
      return;
    }
    this.ids.add(id);
    if (this.ids.size > this.capacity) {
      const oldest = this.ids.values().next().value;
      if (oldest !== undefined) {
        this.ids.delete(oldest);
      }
    }
  }

  get size() {
    return this.ids.size;
  }
}

const UNITS = [
  ['GiB', 1024 ** 3],
  ['MiB', 1024 ** 2],
  ['KiB', 1024],
] as const

/** A byte count for people: 5242880 → "5 MiB", 1536 → "1.5 KiB", 900 → "900 bytes". Same as the page's humanSize. */
export function humanSize(bytes: number): string {
  for (const [unit, size] of UNITS) {
    if (bytes >= size) return `${Number((bytes / size).toFixed(1))} ${unit}`
  }
  return `${bytes} bytes`
}

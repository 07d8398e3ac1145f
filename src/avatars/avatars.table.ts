export interface AvatarsTable {
  name: string
  content: Buffer
  created_at: string | Date
}

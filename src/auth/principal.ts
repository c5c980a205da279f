import type { Access } from './access.js';

/** Who is calling, once authenticated. `type` and `id` are what the audit trail records. */
export interface Principal {
  /** `user`: an OIDC identity; `service`: a service account or the bootstrap admin token. */
  type: 'user' | 'service';
  /** The token's `sub` for users, the service account's id, or `bootstrap-admin`. */
  id: string;
  /** For people: preferred_username (OIDC_USERNAME_CLAIM), else email, else sub. */
  name: string;
  via: 'oidc' | 'api-token' | 'bootstrap-token';
  /** The API token used, for service accounts. */
  tokenId?: string;
  /** OIDC groups from the token (OIDC_GROUPS_CLAIM). */
  groups?: string[];
  access: Access;
}

export const BOOTSTRAP_ADMIN_ID = 'bootstrap-admin';

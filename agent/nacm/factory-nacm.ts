// The NACM configuration of a fresh state directory: group `admin` may do everything; everyone else
// gets RFC 8341's defaults (read permitted except default-deny-all nodes such as shared-secret and
// nacm itself, write denied, exec permitted except default-deny-all RPCs such as kill-session and
// delete-config). The recovery user (`tandem user add NAME --recovery`) is never subject to NACM.
import { NACM_NS } from './default-deny.js';

export const FACTORY_NACM_XML = `<nacm xmlns="${NACM_NS}">`
  + '<enable-nacm>true</enable-nacm>'
  + '<read-default>permit</read-default>'
  + '<write-default>deny</write-default>'
  + '<exec-default>permit</exec-default>'
  + '<enable-external-groups>true</enable-external-groups>'
  + '<rule-list><name>admin</name><group>admin</group>'
  + '<rule><name>permit-all</name><module-name>*</module-name><access-operations>*</access-operations><action>permit</action>'
  + '<comment>Members of group admin (tandem user add NAME --group admin) may read, write and run everything.</comment></rule>'
  + '</rule-list>'
  + '</nacm>';

// HaGroups.setVrrpState: a VRRP instance as the controller of a group, alongside static groups.
import { expect } from 'chai';
import { HaGroups, type HaGroupChange } from '../../ha/ha-groups.js';

describe('HA groups driven by VRRP', function () {
  let groups: HaGroups;
  let changes: HaGroupChange[];

  beforeEach(function () {
    groups = new HaGroups();
    changes = [];
    groups.subscribe((c) => changes.push(c));
  });

  it('follows the VRRP state and counts transitions', function () {
    groups.apply([{ name: 'g1' }]);
    expect(groups.list()[0]).to.include({ state: 'backup', controller: 'none' });
    groups.setVrrpState('g1', 'backup');
    expect(groups.list()[0]).to.include({ state: 'backup', controller: 'vrrp', transitions: 0 });
    groups.setVrrpState('g1', 'master');
    groups.setVrrpState('g1', 'master');
    expect(groups.state('g1')).to.equal('master');
    groups.setVrrpState('g1', 'backup');
    expect(groups.list()[0]).to.include({ state: 'backup', controller: 'vrrp', transitions: 2 });
    expect(changes.slice(1)).to.deep.equal([
      { group: 'g1', oldState: 'backup', newState: 'master', controller: 'vrrp' },
      { group: 'g1', oldState: 'master', newState: 'backup', controller: 'vrrp' },
    ]);
  });

  it('keeps the VRRP state when /ha is applied again, and a group created later takes it', function () {
    groups.setVrrpState('g2', 'master');
    expect(groups.list()).to.deep.equal([]);
    groups.apply([{ name: 'g1' }, { name: 'g2' }]);
    expect(groups.state('g2')).to.equal('master');
    expect(groups.list().find((g) => g.name === 'g2')?.controller).to.equal('vrrp');
    groups.apply([{ name: 'g1' }, { name: 'g2' }]);
    expect(groups.state('g2')).to.equal('master');
  });

  it('falls back to backup with no controller when VRRP releases the group', function () {
    groups.apply([{ name: 'g1' }]);
    groups.setVrrpState('g1', 'master');
    groups.setVrrpState('g1', undefined);
    expect(groups.list()[0]).to.include({ state: 'backup', controller: 'none' });
    groups.apply([{ name: 'g1' }]);
    expect(groups.state('g1')).to.equal('backup');
  });

  it('leaves a static group to its configuration', function () {
    groups.apply([{ name: 'g1', state: 'backup' }]);
    groups.setVrrpState('g1', 'master');
    expect(groups.list()[0]).to.include({ state: 'backup', controller: 'static' });
  });
});

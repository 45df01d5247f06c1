import { Migration } from '@mikro-orm/migrations';

export class Migration20261202011129 extends Migration {

  override async up(): Promise<void> {
    this.addSql(`comment on table "user_user_email_primary" is 'mikro-orm-coaster primary relationship, child column naming the parent: owner_id';`);
  }

  override async down(): Promise<void> {
    this.addSql(`comment on table "user_user_email_primary" is '';`);
  }

}
